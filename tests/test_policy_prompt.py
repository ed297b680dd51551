"""Policy files, conversation parsing and the Llama Guard 3 prompt layout."""

import random
import tomllib

import pytest

from pocketguard.conversation import Conversation, ConversationError
from pocketguard.policy import DEFAULT_CATEGORIES, Category, Policy, PolicyError
from pocketguard.prompt import answer_text, render


def test_default_policy_is_mlcommons_s1_to_s14():
    p = Policy.default()
    assert p.codes == [f"S{i}" for i in range(1, 15)]
    assert p.get("S9").name == "Indiscriminate Weapons"
    assert all(c.description for c in DEFAULT_CATEGORIES)


def test_toml_subset_rename_extra_keep_stable_codes(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text(
        'base = "default"\nkeep = ["S10", "S1", "S9"]\n[rename]\nS9 = { name = "Weapons" }\n'
        '[[category]]\ncode = "X1"\nname = "Medical misinformation"\ndescription = "false health claims"\n'
    )
    p = Policy.from_toml(f)
    assert p.codes == ["S1", "S9", "S10", "X1"]  # base order kept, codes unchanged
    assert p.get("S9").name == "Weapons"
    assert Policy.from_dict(__import__("tomllib").loads(p.to_toml())) == p  # round-trip through TOML


def test_subset_refuses_repeats_and_unknown_codes_as_the_toml_keep_does():
    # a repeat is likely a typo for another code (S1 for S11): the API never keeps a shorter list in silence
    with pytest.raises(PolicyError, match=r"duplicate category code\(s\) \['S1'\]"):
        Policy.default().subset(["S1", "S9", "S1"])
    with pytest.raises(PolicyError, match="unknown category 'S99'"):
        Policy.default().subset(["S1", "S99"])
    assert Policy.default().subset(["S9", "S1"]).codes == ["S1", "S9"]


@pytest.mark.parametrize(
    "text, needle",
    [
        ('keep = ["S1"]', "needs base"),
        ('base = "default"\nkeep = ["S99"]', "unknown category 'S99'"),
        ('[[category]]\ncode = "s1"\nname = "x"', "upper-case"),
        # `$` matched before a final line break: "S1\n" loaded beside S1, broke its prompt line and answer parsing
        ('base = "default"\nkeep = ["S1"]\n[[category]]\ncode = "S1\\n"\nname = "Second S1"', r"category code 'S1\\n' must be an upper-case"),
        ('[[category]]\ncode = "X1"\nname = "a"\n[[category]]\ncode = "X1"\nname = "b"', "duplicate"),
        ("bogus = 1", "unknown keys"),
        ("base = [", "not valid TOML"),
        ("", "at least one category"),
        # wrong types and typos in tables are PolicyErrors naming the place, not AttributeError/TypeError crashes
        # (`moderate --policy` exits 1 = unsafe on those) nor keys ignored in silence
        ('base = "default"\nkeep = "S1"', "'keep' must be a list"),
        ('base = "default"\nkeep = ["S1", "S9", "S1"]', r"keep: duplicate category code\(s\) \['S1'\]"),
        ('base = "default"\n[rename]\nS1 = 5', r"rename\.S1 must be a table"),
        ('base = "default"\nrename = [1]', "'rename' must be a table"),
        ('base = "default"\n[rename]\nS1 = { nam = "x" }', r"rename\.S1: unknown keys \['nam'\]"),
        ("category = [1]", "category #1 must be a table"),
        ('category = "x"', "must be an array of tables"),
        ('[[category]]\ncode = "X1"\nname = "n"\ndescr = "d"', r"category #1: unknown keys \['descr'\]"),
        ('[[category]]\ncode = "X1"\nname = ["n"]', "name must be a string"),
        ('[[category]]\ncode = "X1"', r"category #1 lacks \['name'\]"),
        # a name is one line of the prompt: a line break would forge more policy lines
        ('[[category]]\ncode = "X1"\nname = "a\\nS2: evil"', "must be one line"),
    ],
)
def test_bad_policy_files_fail_clearly(tmp_path, text, needle):
    f = tmp_path / "p.toml"
    f.write_text(text)
    with pytest.raises(PolicyError, match=needle) as e:
        Policy.from_toml(f)
    assert str(f) in str(e.value)  # every error names the file


@pytest.mark.parametrize("code", ["S1\n", "X12\n", "S1\r\n", "S1\x00"])
def test_a_code_is_the_whole_string(code):
    with pytest.raises(PolicyError, match="must be an upper-case letter"):
        Policy((Category(code, "Violent Crimes"),))


# Every character TOML escapes (the C0 controls, DEL, quotes, backslashes) and some it does not (tab, C1 and Unicode
# line breaks, a BOM, non-BMP): a description may hold any of them, a name all but line breaks (Policy refuses those).
_HARD = [chr(i) for i in range(0x20)] + ["\x7f", '"', "'", "\\", "\\u0041", '"""', "\x85", "\u2028", "\ufeff", "é", "日本", "🙂", " ", "#", "=", "["]
_LINE_BREAKS = "\r\n\v\f\x85\u2028\u2029"


def test_to_toml_round_trips_any_name_and_description(tmp_path):
    """to_toml escaped only quotes and backslashes: a line break or control character made TOML no reader accepts
    (a GGUF export of such a policy could not be loaded back)."""
    rng = random.Random(0)
    name_chars = [c for c in _HARD if not set(c) & set(_LINE_BREAKS)]
    cases = [(f"N{c}", f"d{c}") for c in name_chars] + [("Name", f"{c}") for c in _HARD]
    cases += [("N" + "".join(rng.choices(name_chars, k=rng.randrange(12))), "".join(rng.choices(_HARD, k=rng.randrange(30))))
              for _ in range(300)]
    for name, description in cases:
        policy = Policy((Category("X1", name, description), Category("S9", "Weapons", description[::-1])))
        text = policy.to_toml()
        assert Policy.from_dict(tomllib.loads(text)) == policy, (name, description)
    f = tmp_path / "p.toml"  # as an artifact's policy.toml is written and read
    f.write_text(policy.to_toml(), encoding="utf-8")
    assert Policy.from_toml(f) == policy


def test_a_policy_path_that_cannot_be_read_is_a_policy_error(tmp_path):
    with pytest.raises(PolicyError, match="cannot read policy file") as e:  # a folder: not an IsADirectoryError
        Policy.from_toml(tmp_path)
    assert str(tmp_path) in str(e.value)


def test_conversation_parsing_and_errors():
    c = Conversation.from_messages([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}])
    assert c.judged == "agent"
    with pytest.raises(ConversationError, match="alternate"):
        Conversation.from_messages([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    with pytest.raises(ConversationError, match="system"):
        Conversation.from_messages([{"role": "system", "content": "a"}])
    with pytest.raises(ConversationError, match="content must be a string"):
        Conversation.from_messages([{"role": "user", "content": 3}])
    with pytest.raises(ConversationError, match="empty"):
        Conversation.from_messages([])
    with pytest.raises(ConversationError, match="last message is the agent"):
        Conversation.from_messages(c.to_messages(), role="user")


def test_prompt_layout_matches_llama_guard_3():
    conv = Conversation.exchange("How do I bake bread?", "Mix flour and water.")
    text = render(Policy.default().subset(["S1", "S2"]), conv)
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        "Task: Check if there is unsafe content in 'Agent' messages in conversations according our safety policy "
        "with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\nS1: Violent Crimes.\nS2: Non-Violent Crimes.\n"
        "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\nUser: How do I bake bread?\n\nAgent: Mix flour and water.\n\n"
        "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST Agent message in the above conversation:\n"
        " - First line must read 'safe' or 'unsafe'.\n"
        " - If unsafe, a second line must include a comma-separated list of violated categories."
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert answer_text([]) == "safe" and answer_text(["S1", "S10"]) == "unsafe\nS1,S10"
    # the default's category block is Llama Guard 3's, word for word (its chat template): a real Llama Guard 3
    # compressed or judged through pocketguard reads the names it was trained on
    block = render(Policy.default(), conv).split("<BEGIN UNSAFE CONTENT CATEGORIES>\n")[1].split("<END UNSAFE")[0]
    assert block == (
        "S1: Violent Crimes.\nS2: Non-Violent Crimes.\nS3: Sex Crimes.\nS4: Child Exploitation.\nS5: Defamation.\n"
        "S6: Specialized Advice.\nS7: Privacy.\nS8: Intellectual Property.\nS9: Indiscriminate Weapons.\nS10: Hate.\n"
        "S11: Self-Harm.\nS12: Sexual Content.\nS13: Elections.\nS14: Code Interpreter Abuse.\n")


def test_render_pieces_are_the_strings_encode_prompt_tokenizes(tiny_tok):
    """`export --verify` tokenizes these pieces one by one with a transformers tokenizer to tell a wrong tokenizer
    file from one whose pre-tokenizer merges across them: they must be exactly what `encode_prompt` encodes."""
    from pocketguard.prompt import encode_prompt, render_pieces

    policy = Policy.default().subset(["S1", "S9"])
    for conv in [Conversation.prompt("How do I bake bread?\n\nThanks"),
                 Conversation.from_messages([{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "User: <|eot_id|> hello"}])]:
        pieces = render_pieces(policy, conv)
        ids = [t for p in pieces for t in ([tiny_tok.special(p)] if p in tiny_tok.specials else tiny_tok.encode(p))]
        assert ids == encode_prompt(tiny_tok, policy, conv).ids and "".join(pieces) == render(policy, conv)
