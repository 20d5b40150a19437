import assert from "node:assert/strict";
import { Conversations, MAX_UNREAD_PEOPLE } from "../client/tui/conversation.ts";
import { MAX_IGNORED, MemoryIgnoreList, storedIgnoreList } from "../client/tui/ignore.ts";
import { InputHistoryFile, keptAcrossRuns } from "../client/tui/input_history_file.ts";
import { askName, loadSavedName, saveName } from "../client/tui/name_prompt.ts";
import { ClientStore } from "../client/store/mod.ts";
import { Identity } from "../shared/crypto/mod.ts";
import { ReelayError } from "../shared/errors.ts";

Deno.test("conversations: unread counts are kept for at most MAX_UNREAD_PEOPLE, newest kept", () => {
  const talk = new Conversations();
  talk.open("bob");
  for (let i = 0; i <= MAX_UNREAD_PEOPLE; i++) talk.received(`p${i}`);
  const unread = talk.unread;
  assert.equal(Object.keys(unread).length, MAX_UNREAD_PEOPLE);
  assert.equal(unread.p0, undefined, "the longest-quiet one went");
  assert.equal(unread[`p${MAX_UNREAD_PEOPLE}`], 1);
  talk.received("p1");
  talk.received("Bob");
  assert.equal(talk.unread.p1, 2);
  assert.equal(talk.unread.Bob, undefined, "the open conversation has no unread");
  assert.equal(talk.lastSender, "Bob");
});

Deno.test("ignore: a list holds at most MAX_IGNORED names, in memory and in the client store", async () => {
  const home = await Deno.makeTempDir();
  const store = await ClientStore.open({
    home,
    server: "127.0.0.1_9000",
    identity: await Identity.generate(),
  });
  try {
    for (const list of [new MemoryIgnoreList(), storedIgnoreList(store)]) {
      for (let i = 0; i < MAX_IGNORED; i++) await list.add(`n${i}`);
      await list.add("N5"); // already there: no error
      await assert.rejects(
        list.add("one-more"),
        (error) => error instanceof ReelayError && error.code === "too-many-ignored",
      );
      assert.equal(list.names().length, MAX_IGNORED);
      assert.equal(await list.remove("N7"), true);
      assert.equal(await list.remove("n7"), false);
      assert.equal(list.has("n8"), true);
    }
    assert.equal(store.isIgnored("N9"), true, "the stored list is the store's");
  } finally {
    store.close();
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("input history file: owner-only, commands only, message text never written", async () => {
  const home = await Deno.makeTempDir();
  try {
    const store = new InputHistoryFile(home);
    const typed = ["/who", "hello there", "/msg bob pin 1234", "/r ok", "/REPLY yes", "/q bob"];
    await store.save(typed);
    const text = await Deno.readTextFile(`${home}/input_history`);
    assert.equal(text, "/who\n/q bob\n");
    assert.equal((await Deno.stat(`${home}/input_history`)).mode! & 0o777, 0o600);
    assert.deepEqual(typed.filter(keptAcrossRuns), ["/who", "/q bob"]);
    // A file edited by hand cannot smuggle message text back in.
    await Deno.writeTextFile(`${home}/input_history`, "/msg bob x\n/videos\n");
    assert.deepEqual(await store.load(), ["/videos"]);
    await store.forget();
    await store.forget(); // nothing left: still fine
    assert.deepEqual(await store.load(), []);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("name prompt: a bad answer is explained and asked again; nothing valid is a usage error", async () => {
  const shown: string[] = [];
  const io = (answers: (string | undefined)[]) => ({
    readLine: () => Promise.resolve(answers.shift()),
    write: (text: string) => void shown.push(text),
  });
  assert.equal(await askName(undefined, io(["", "bad name", " dora "])), "dora");
  assert.ok(shown.some((text) => /A name is needed/.test(text)));
  await assert.rejects(askName("x", io([undefined])), /pass --name NAME/);
  const home = await Deno.makeTempDir();
  try {
    await saveName(home, "dora");
    assert.equal((await Deno.stat(`${home}/name`)).mode! & 0o777, 0o600);
    await Deno.writeTextFile(`${home}/name`, "not a name!\n");
    assert.equal(await loadSavedName(home), undefined, "a damaged name is asked again");
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});
