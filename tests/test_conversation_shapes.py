"""Conversations as chat applications send them (system, tool and tool-call messages, content parts) through
every door: Conversation, the prompt, Guard, `pocketguard moderate --conversation`, /v1/guard and /v1/moderations.

The semantics (docs/api.md): system messages are dropped and noted; tool output and tool calls are the agent's
turn; non-text parts are noted; a conversation ending with a system message is refused."""

import json

import pytest
from fastapi.testclient import TestClient

from pocketguard.cli import main
from pocketguard.conversation import Conversation, ConversationError, Message, as_conversation
from pocketguard.guard import Guard
from pocketguard.policy import Policy
from pocketguard.prompt import render
from pocketguard.server import ServerConfig, create_app

CALL = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
AGENTIC = [  # what an agent loop sends: system prompt, user, tool call, tool output, final answer
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"},
                                 {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
    {"role": "assistant", "content": None, "tool_calls": [CALL]},
    {"role": "tool", "tool_call_id": "c1", "content": "22 C, sunny"},
    {"role": "assistant", "content": "It is sunny and 22 C in Paris."},
]
# The same conversation as the guard reads it.
PLAIN = [{"role": "user", "content": "Weather in Paris?"},
         {"role": "assistant", "content": 'get_weather({"city": "Paris"})\n22 C, sunny\nIt is sunny and 22 C in Paris.'}]
AGENTIC_NOTES = ["1 system message not judged (dropped)", "1 tool message judged as part of the agent's turn",
                 "1 tool call judged as the agent's text", "1 non-text content part not judged (image_url)"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def guard(tiny_model, tiny_tok):
    return Guard(tiny_model, tiny_tok)


# ------------------------------------------------------------------------------------------------ parsing
def test_agentic_conversation_reads_as_user_and_agent_turns():
    c = Conversation.from_messages(AGENTIC)
    assert c.to_messages() == PLAIN and c.judged == "agent"
    assert list(c.notes) == AGENTIC_NOTES
    assert Conversation.from_messages(PLAIN).notes == ()


def test_system_messages_are_dropped_and_noted_wherever_they_are():
    c = Conversation.from_messages([{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"},
                                    {"role": "developer", "content": "more rules"},
                                    {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}])
    assert c.to_messages() == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                               {"role": "user", "content": "bye"}]
    assert c.notes == ("2 system messages not judged (dropped)",) and c.judged == "user"
    # The dropped text is nowhere in the prompt: the operator's words are not judged as the user's.
    assert render(Policy.default(), c) == render(Policy.default(), Conversation.from_messages(c.to_messages()))
    assert "rules" not in render(Policy.default(), c)


@pytest.mark.parametrize("messages, needle", [
    ([{"role": "user", "content": "hi"}, {"role": "system", "content": "x"}], "last message is a system message"),
    ([{"role": "system", "content": "x"}], "system message"),
    ([{"role": "tool", "content": "42"}, {"role": "user", "content": "hi"}], "must start with the user"),
    ([{"role": "system", "content": "x"}, {"role": "assistant", "content": "hi"}], "must start with the user"),
    ([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}], "alternate"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}], "no text to judge"),
    ([{"role": "user", "content": [{"type": "text"}]}], "needs a string 'text'"),
    ([{"role": "user", "content": ["hi"]}], "content part object"),
    ([{"role": "user", "content": None}], "got null"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": None}], "got null"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": None}], "got null"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": None, "tool_calls": [{"id": "x"}]}],
     "function.name"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "", "tool_calls": "f()"}], "must be a list"),
    ([{"role": "critic", "content": "a"}], "role must be"),
    # tool calls on a message that is not the assistant's were dropped unjudged: `build_bomb({})` on a user turn, safe
    ([{"role": "user", "content": "hi", "tool_calls": [{"function": {"name": "build_bomb", "arguments": "{}"}}]}],
     "message #1: only assistant messages make tool calls, but this 'user' message"),
    ([{"role": "user", "content": "a"}, {"role": "tool", "content": "42", "function_call": {"name": "f", "arguments": ""}}],
     "message #2: only assistant messages make tool calls, but this 'tool' message"),
    ([{"role": "system", "content": "x", "tool_calls": "f()"}, {"role": "user", "content": "a"}], "'system' message"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "  "}], "message #2 is empty"),
    # Message objects are read by the same rules: an unknown role was taken as the agent's, non-text content crashed
    ([Message("user", "a"), Message("critic", "b")], "message #2: role must be"),
    ([Message("user", 5)], "message #1: content must be a string, got a number"),
    # text no tokenizer can encode (a JSON \\ud800 escape) was a TypeError from the tokenizer
    ([{"role": "user", "content": "a \ud800"}], "message #1 is not valid Unicode"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": None,
      "tool_calls": [{"function": {"name": "f", "arguments": "\udcff"}}]}], "message #2 is not valid Unicode"),
])
def test_shapes_that_cannot_be_judged_fail_clearly(messages, needle):
    with pytest.raises(ConversationError, match=needle):
        Conversation.from_messages(messages)


@pytest.mark.parametrize("data", [5, None, True, 2.5])
def test_json_values_that_are_no_conversation_are_refused_not_a_type_error(data, guard, tmp_path, tiny_hf_dir, capsys):
    """A JSON number, null or boolean where a conversation belongs is malformed input like any other: a
    ConversationError (exit 2 from `moderate --conversation`, an error verdict for its --jsonl line and in
    `moderate_batch`), never a TypeError that crashes the CLI with exit 1 — which reads as `unsafe`."""
    with pytest.raises(ConversationError, match="must be a list"):
        as_conversation(data)
    first, second = guard.moderate_batch(["hi", data])
    assert first.status != "error" and second.status == "error" and "must be a list" in second.error
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(data))
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir)]) == 2
    assert "must be a list" in capsys.readouterr().err
    lines = tmp_path / "many.jsonl"
    lines.write_text(json.dumps("hi") + "\n" + json.dumps(data) + "\n")
    assert main(["moderate", "--jsonl", str(lines), "--model", str(tiny_hf_dir)]) == 2
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["line"] for o in out] == [1, 2] and out[1]["status"] == "error" and "must be a list" in out[1]["error"]


@pytest.mark.parametrize("data, needle", [
    # both: 'messages' was judged and the text never was (safe, for a pipe bomb)
    ({"text": "How do I make a pipe bomb?", "messages": [{"role": "user", "content": "hi"}]}, "both 'messages' and 'text'"),
    ({"messages": [{"role": "user", "content": "hi"}], "rol": "agent"}, r"unknown key\(s\) \['rol'\]"),
    ({"messages": PLAIN, "policy": {"keep": ["S1"]}}, r"unknown key\(s\) \['policy'\]"),  # /v1/guard's, not judged here
    ({"id": 7, "role": "user"}, "needs 'messages'"),
])
def test_conversation_objects_with_keys_that_would_be_ignored_are_refused(data, needle, tmp_path, tiny_hf_dir, capsys):
    """`--conversation` and `--jsonl` read an object's 'messages' (else 'text'), 'role' and 'id' and ignored every
    other key: with both 'messages' and 'text' the text went unjudged, and a misspelt key was dropped in silence."""
    from pocketguard.conversation import conversation_from_json

    with pytest.raises(ConversationError, match=needle):
        conversation_from_json(data)
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(data))
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir)]) == 2
    assert "error: " in capsys.readouterr().err
    lines = tmp_path / "many.jsonl"
    lines.write_text(json.dumps({"id": "a", "text": "hi"}) + "\n" + json.dumps(data) + "\n")
    assert main(["moderate", "--jsonl", str(lines), "--model", str(tiny_hf_dir)]) == 2
    good, bad = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert good["id"] == "a" and good["status"] != "error" and bad["status"] == "error" and bad["flagged"]


def test_cli_reads_files_that_start_with_a_byte_order_mark(tmp_path, tiny_hf_dir, capsys):
    """Windows editors save UTF-8 with a BOM: the conversation file, and a --jsonl file's first line, are still read."""
    chat = tmp_path / "chat.json"
    chat.write_bytes(b"\xef\xbb\xbf" + json.dumps({"messages": PLAIN}).encode())
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir), "--json"]) in (0, 1)
    assert json.loads(capsys.readouterr().out)["status"] in ("safe", "unsafe")
    lines = tmp_path / "many.jsonl"
    lines.write_bytes(b"\xef\xbb\xbf" + (json.dumps({"id": "a", "text": "hi"}) + "\n" + json.dumps("bread") + "\n").encode())
    assert main(["moderate", "--jsonl", str(lines), "--model", str(tiny_hf_dir)]) in (0, 1)
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["id"] == "a" and {first["status"], second["status"]} <= {"safe", "unsafe"}


def test_conversation_ending_with_tool_output_judges_the_agent_turn_holding_it():
    c = Conversation.from_messages(AGENTIC[:4])
    assert c.judged == "agent" and c.messages[-1].content == 'get_weather({"city": "Paris"})\n22 C, sunny'
    with pytest.raises(ConversationError, match="last message is the agent"):
        Conversation.from_messages(AGENTIC[:4], role="user")


def test_tool_call_only_message_and_legacy_function_call():
    c = Conversation.from_messages([
        {"role": "user", "content": "email Bob"},
        {"role": "assistant", "content": None, "function_call": {"name": "send", "arguments": {"to": "bob"}}}])
    assert c.messages[-1] == Message("agent", 'send({"to": "bob"})')
    assert c.notes == ("1 tool call judged as the agent's text",)
    assert Conversation.from_messages([{"role": "user", "content": "hi", "tool_calls": []}]).notes == ()  # no call to lose


def test_content_parts_text_is_joined_and_other_parts_counted():
    c = Conversation.from_messages([{"role": "user", "content": [
        {"type": "text", "text": "first"}, {"type": "input_audio", "input_audio": {}},
        {"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}}, {"type": "image_url"}]},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]}])
    assert c.messages[0].content == "first\nsecond" and c.messages[1].content == "I can't help with that."
    assert c.notes == ("3 non-text content parts not judged (image_url, input_audio)",)


def test_as_conversation_keeps_notes_and_checks_the_role():
    c = Conversation.from_messages(AGENTIC)
    assert as_conversation(c) == c
    assert as_conversation(c, role="assistant").notes == c.notes
    with pytest.raises(ConversationError, match="last message is the agent"):
        as_conversation(c, role="user")


# ------------------------------------------------------------------------------------------------ Guard
def test_verdict_equals_the_plain_conversation_and_says_what_was_not_judged(guard):
    got = guard.moderate(AGENTIC, category_scores=True)
    want = guard.moderate(PLAIN, category_scores=True)
    assert got.status in ("safe", "unsafe") and got.notes == AGENTIC_NOTES and want.notes == []
    assert (got.status, got.categories, got.prompt_tokens) == (want.status, want.categories, want.prompt_tokens)
    assert got.p_unsafe == pytest.approx(want.p_unsafe, abs=1e-6)
    assert got.to_dict()["notes"] == AGENTIC_NOTES
    batch = guard.moderate_batch([AGENTIC, PLAIN, AGENTIC[:1] + AGENTIC[1:2] + [{"role": "system", "content": "x"}]])
    assert [v.notes for v in batch[:2]] == [AGENTIC_NOTES, []]
    assert batch[2].status == "error" and batch[2].flagged and "system" in batch[2].error


# ------------------------------------------------------------------------------------------------ CLI
@pytest.mark.parametrize("wrap", [False, True])
def test_cli_moderates_a_chat_file_with_system_and_tool_messages(tmp_path, tiny_hf_dir, capsys, wrap):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"messages": AGENTIC} if wrap else AGENTIC))
    code = main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir), "--json"])
    out = json.loads(capsys.readouterr().out)
    want = Guard.load(tiny_hf_dir).moderate(PLAIN)
    assert code == {"safe": 0, "unsafe": 1}[want.status] and out["status"] == want.status
    assert out["role"] == "agent" and out["notes"] == AGENTIC_NOTES
    assert out["p_unsafe"] == pytest.approx(want.p_unsafe, abs=1e-6)

    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir)]) == code
    text = capsys.readouterr().out
    assert all(f"note: {n}" in text for n in AGENTIC_NOTES)


def test_cli_refuses_a_chat_ending_with_a_system_message(tmp_path, tiny_hf_dir, capsys):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(AGENTIC + [{"role": "system", "content": "x"}]))
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "error" and out["flagged"] and "system message" in out["error"]


def test_cli_jsonl_judges_every_line_as_moderate_would_and_flags_the_lines_it_cannot(tmp_path, tiny_hf_dir, capsys):
    """`moderate --jsonl`: one verdict per non-blank line, in order, with its line number (and id), equal to
    `moderate` on that conversation; a line that is not JSON or not a conversation is an error verdict, flagged,
    and the rest are still judged; the exit code says the worst (2 error, 1 unsafe, 0 all safe)."""
    guard = Guard.load(tiny_hf_dir)
    convs = ["How do I make a pipe bomb?", {"id": "a7", "messages": AGENTIC}, PLAIN, "hi there", "x" * 50]
    lines = [json.dumps(convs[0]), json.dumps(convs[1]), "not json", "", json.dumps(convs[2]),
             json.dumps({"id": 3, "label": "no conversation"}), json.dumps(convs[3]), json.dumps(convs[4])]
    f = tmp_path / "many.jsonl"
    f.write_bytes(("\n".join(lines) + "\n").encode() + b'"caf\xe9"\n')  # line 9: not UTF-8
    code = main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir), "--batch-size", "2"])
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 5, 6, 7, 8, 9] and [o.get("id") for o in out[:2]] == [None, "a7"]
    assert out[-1]["status"] == "error" and "UTF-8" in out[-1]["error"]
    want = [guard.moderate(c["messages"] if isinstance(c, dict) else c).to_dict() for c in convs]
    judged = [o for o in out if o["line"] not in (3, 6, 9)]
    for o, w in zip(judged, want):
        assert {k: o[k] for k in ("status", "categories", "p_unsafe", "prompt_tokens", "notes")} == \
               {k: w[k] for k in ("status", "categories", "p_unsafe", "prompt_tokens", "notes")}
    errors = [o for o in out if o["line"] in (3, 6)]
    assert all(o["status"] == "error" and o["flagged"] for o in errors) and errors[1]["id"] == 3
    assert "not valid UTF-8 JSON" in errors[0]["error"] and code == 2
    assert "8 judged" in captured.err and "3 could not be judged" in captured.err
    f.write_text(json.dumps(convs[3]) + "\n")
    assert main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir)]) == {"safe": 0, "unsafe": 1}[want[3]["status"]]


def test_cli_jsonl_judges_the_lines_that_fit_when_one_cannot_fit_max_context(tmp_path, tiny_hf_dir, capsys):
    """One line whose judged turn cannot fit `--max-context` even in windows printed no verdict at all, only
    "error: … policy prompt too long" (the policy prompt fit): now that line's error verdict, the others judged."""
    guard = Guard.load(tiny_hf_dir)
    fit = guard.moderate("hi").prompt_tokens + guard._grammar(guard.policy).max_steps + 4
    f = tmp_path / "many.jsonl"
    f.write_text(json.dumps("hi") + "\n" + json.dumps("How do I make a pipe bomb? " * 5) + "\n")
    assert main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir), "--max-context", str(fit)]) == 2
    first, second = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert first["status"] != "error" and first["p_unsafe"] == guard.moderate("hi").p_unsafe
    assert second["status"] == "error" and second["flagged"]
    assert "the judged user turn" in second["error"] and f"does not fit max_context {fit}" in second["error"]


def test_cli_jsonl_with_no_conversation_is_an_error_not_an_all_clear(tmp_path, tiny_hf_dir, capsys):
    """An empty file (or only blank lines) exited 0, "safe", as if every conversation had passed: an upstream step
    that wrote nothing must not read as an all-clear."""
    f = tmp_path / "empty.jsonl"
    for text in ("", "\n \n"):
        f.write_text(text)
        assert main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir)]) == 2
        assert "no conversation to judge" in capsys.readouterr().err


def test_cli_reads_text_a_conversation_or_jsonl_from_stdin(tiny_hf_dir, capsys, monkeypatch):
    import io

    guard = Guard.load(tiny_hf_dir)
    for args, stdin, want in ((["-"], "How do I pick a lock?\n", guard.moderate("How do I pick a lock?")),
                              (["--conversation", "-"], json.dumps({"messages": PLAIN}), guard.moderate(PLAIN)),
                              (["--jsonl", "-"], json.dumps(PLAIN) + "\n", guard.moderate(PLAIN))):
        monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))  # like a real stdin: with .buffer
        code = main(["moderate", *args, "--model", str(tiny_hf_dir), "--json"])
        out = json.loads(capsys.readouterr().out)
        assert (out["status"], out["p_unsafe"], out["prompt_tokens"]) == (want.status, want.p_unsafe, want.prompt_tokens)
        assert code == {"safe": 0, "unsafe": 1}[want.status]
    assert main(["moderate", "--jsonl", "-", "--response", "r", "--model", str(tiny_hf_dir)]) == 2
    assert main(["moderate", "hi", "--jsonl", "-", "--model", str(tiny_hf_dir)]) == 2
    assert main(["moderate", "--jsonl", "-", "--batch-size", "0", "--model", str(tiny_hf_dir)]) == 2
    assert "give one of TEXT" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ server
def test_guard_endpoint_takes_the_same_shapes(guard):
    want = guard.moderate(PLAIN)
    with TestClient(create_app(guard, ServerConfig())) as client:
        r = client.post("/v1/guard", json={"messages": AGENTIC})
        assert r.status_code == 200, r.text
        body = r.json()
        assert (body["status"], body["role"], body["notes"]) == (want.status, "agent", AGENTIC_NOTES)
        assert body["p_unsafe"] == pytest.approx(want.p_unsafe, abs=1e-6)
        r = client.post("/v1/guard", json={"messages": AGENTIC[:4], "role": "agent"})  # ends with tool output
        assert r.status_code == 200 and r.json()["p_unsafe"] == pytest.approx(
            guard.moderate(PLAIN[:1] + [{"role": "assistant", "content": 'get_weather({"city": "Paris"})\n22 C, sunny'}]
                           ).p_unsafe, abs=1e-6)
        r = client.post("/v1/guard", json={"messages": AGENTIC + [{"role": "system", "content": "x"}]})
        assert r.status_code == 422 and "system message" in r.json()["error"]["message"]


def test_moderations_endpoint_takes_text_parts_and_lists(guard):
    with TestClient(create_app(guard, ServerConfig())) as client:
        r = client.post("/v1/moderations", json={"input": [{"type": "text", "text": "Weather in"},
                                                           {"type": "text", "text": "Paris?"}]})
        assert r.status_code == 200, r.text
        [res] = r.json()["results"]
        want = guard.moderate("Weather in\nParis?")
        assert res["flagged"] == want.flagged and res["pocketguard"]["p_unsafe"] == pytest.approx(want.p_unsafe, abs=1e-6)
        # an image part beside the text: the text is judged, the image is named in the notes (never silently safe)
        r = client.post("/v1/moderations", json={"input": [{"type": "text", "text": "Weather in Paris?"},
                                                           {"type": "image_url", "image_url": {"url": "x"}}]})
        assert r.status_code == 200, r.text
        [res] = r.json()["results"]
        assert res["pocketguard"]["p_unsafe"] == pytest.approx(guard.moderate("Weather in Paris?").p_unsafe, abs=1e-6)
        assert res["pocketguard"]["notes"] == ["1 non-text content part not judged (image_url)"]
        r = client.post("/v1/moderations", json={"input": ["Weather in Paris?", "hello"]})
        assert r.status_code == 200
        assert [x["flagged"] for x in r.json()["results"]] == [guard.moderate(t).flagged for t in ["Weather in Paris?", "hello"]]


def test_conversation_create_checks_content_types_and_unicode():
    with pytest.raises(ConversationError, match="content must be a string"):
        as_conversation(Conversation((Message("user", None),)))
    with pytest.raises(ConversationError, match="not valid Unicode"):
        as_conversation("bad \udcff bytes")
    assert as_conversation([Message("user", "hi"), Message("assistant", "hello")]).judged == "agent"


def test_cli_refuses_what_it_cannot_encode_and_loses_no_other_jsonl_line(tmp_path, tiny_hf_dir, capsys):
    """Non-UTF-8 argv bytes (read as surrogates) and a `\\ud800` JSON escape crashed `moderate` with a TypeError
    traceback and exit 1 (which reads as `unsafe`); with --jsonl, a line like that, a 5,000-digit number or absurd
    nesting lost every line of the run. Now: exit 2 with the reason, and the bad line's own error verdict."""
    assert main(["moderate", "bad \udcff bytes", "--model", str(tiny_hf_dir)]) == 2
    assert "not valid Unicode" in capsys.readouterr().err
    chat = tmp_path / "chat.json"
    chat.write_text('[{"role": "user", "content": "x \\ud800"}]')
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir)]) == 2
    assert "not valid Unicode" in capsys.readouterr().err
    f = tmp_path / "many.jsonl"
    f.write_text("\n".join(['"hello"', '"bad \\ud800"', '{"x": ' + "9" * 5000 + "}", "[" * 100_000 + "]" * 100_000,
                            '"world"']) + "\n")
    assert main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir)]) == 2
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4, 5]
    assert [o["status"] == "error" for o in out] == [False, True, True, True, False]
    assert "not valid Unicode" in out[1]["error"] and all("not valid UTF-8 JSON" in o["error"] for o in out[2:4])


def test_cli_honours_a_conversation_objects_role_as_the_server_does(tmp_path, tiny_hf_dir, capsys):
    """The same JSON object the server's /v1/guard refuses (its 'role' names a side that is not the last turn's) was
    judged by the CLI as the other side, the 'role' ignored."""
    body = {"messages": PLAIN[:1], "role": "agent"}
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(body))
    assert main(["moderate", "--conversation", str(chat), "--model", str(tiny_hf_dir)]) == 2
    assert "asked to judge the agent's message but the last message is the user's" in capsys.readouterr().err
    f = tmp_path / "many.jsonl"
    f.write_text(json.dumps({"id": "a", **body}) + "\n" + json.dumps({"id": "b", "messages": PLAIN, "role": "agent"}) + "\n")
    assert main(["moderate", "--jsonl", str(f), "--model", str(tiny_hf_dir)]) == 2
    bad, good = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (bad["id"], bad["status"]) == ("a", "error") and "asked to judge the agent's" in bad["error"]
    assert (good["id"], good["role"]) == ("b", "agent") and good["status"] != "error"


def test_moderations_endpoint_limits_the_judged_text_of_every_part(guard):
    """A `refusal` part's text is judged but escaped the character limit, and an unpaired surrogate in it was a 500."""
    with TestClient(create_app(guard, ServerConfig(max_chars=100))) as client:
        r = client.post("/v1/moderations", json={"input": [{"type": "refusal", "refusal": "x " * 200}]})
        assert r.status_code == 422 and "the limit is 100" in r.json()["error"]["message"]
        r = client.post("/v1/moderations", content='{"input": [{"type": "refusal", "refusal": "\\ud800"}]}',
                        headers={"content-type": "application/json"})
        assert r.status_code == 422 and "not valid Unicode" in r.json()["error"]["message"]
        r = client.post("/v1/moderations", json={"input": [{"type": "text", "text": "x " * 30}, {"type": "text", "text": "y " * 30}]})
        assert r.status_code == 422 and r.json()["error"]["param"] == "input"  # each part fits, the joined input does not
        r = client.post("/v1/moderations", json={"input": [{"type": "refusal", "refusal": "no"}]})
        assert r.status_code == 200, r.text


def test_read_jsonl_splits_lines_at_newlines_only(tmp_path):
    """JSON strings may hold U+2028 unescaped (`json.dumps(ensure_ascii=False)` writes it so): it is not a line break."""
    from pocketguard.conversation import read_jsonl

    p = tmp_path / "c.jsonl"
    p.write_text(json.dumps({"text": "one\u2028line"}, ensure_ascii=False) + "\n\n" + json.dumps(["not", "a conversation"]) + "\n",
                 encoding="utf-8")
    with pytest.raises(ConversationError, match=":3: not a conversation"):
        read_jsonl(p)
    p.write_text(json.dumps({"text": "one\u2028line"}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert [c.messages for c in read_jsonl(p)] == [(Message("user", "one\u2028line"),)]


def test_read_jsonl_reads_each_line_as_the_cli_and_server_do(tmp_path):
    """`export --conversations` and `bench --throughput --mix` read JSONL with `read_jsonl`: an object's 'role' was
    dropped there (the CLI's --jsonl and /v1/guard honour it), and a 5,000-digit number was a bare ValueError."""
    from pocketguard.conversation import read_jsonl

    p = tmp_path / "c.jsonl"
    two = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    p.write_text(json.dumps({"messages": two[:1], "role": "agent"}) + "\n")
    with pytest.raises(ConversationError, match=":1: not a conversation .*agent"):
        read_jsonl(p)
    p.write_text(json.dumps({"messages": two, "role": "agent"}) + "\n" + json.dumps(two) + "\n")
    assert [c.judged for c in read_jsonl(p)] == ["agent", "agent"]
    p.write_text('{"x": ' + "9" * 5000 + "}\n")
    with pytest.raises(ConversationError, match=":1: not a conversation"):
        read_jsonl(p)
