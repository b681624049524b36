"""Chat data in the layouts people download it in, read from real files (tests/data/*/README.md says whose)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinylm.config import ChatDataConfig, ChatFileConfig, TokenizerConfig
from tinylm.corpus.readers.jsonl import read_json_records
from tinylm.stats import Stats
from tinylm.tokens.chat_arrays import ChatPart
from tinylm.tokens.chat_data import FileLayout, encode_chat_file
from tinylm.tokens.chat_template import ChatEncoder
from tinylm.tokens.layouts.detect import READERS
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import load_tokenizer, tokenizer_sha256_of

DATA = Path(__file__).parent / "data"
SFT, DPO = ChatDataConfig(max_seq_len=4096), ChatDataConfig(format="dpo", max_seq_len=4096)

# (file, stage format, the layout it is read in, records kept, skips by reason)
REAL_FILES = [
    ("minimind/sft_data.jsonl", SFT, "minimind", 2, {}),
    ("llamafactory/glaive_toolcall_zh_demo.json", SFT, "sharegpt", 4, {}),
    ("llamafactory/alpaca_zh_demo.json", SFT, "alpaca", 3, {}),
    ("llamafactory/v1_sft_demo.jsonl", SFT, "openai", 3, {}),
    ("firefly/dummy_data.jsonl", SFT, "firefly", 2, {}),
    ("trl/prompt_completion_conversational.jsonl", SFT, "prompt_completion", 1, {}),
    ("llamafactory/dpo_zh_demo.json", DPO, "sharegpt", 2, {}),
    ("trl/preference_standard.jsonl", DPO, "trl", 1, {}),
    ("trl/preference_conversational.jsonl", DPO, "trl", 1, {}),
    ("trl/preference_implicit_prompt.jsonl", DPO, "minimind", 1, {}),
    ("firefly/dummy_dpo.jsonl", DPO, "ultrafeedback_binarized", 2, {}),
    ("hh-rlhf/harmless-base-test-excerpt.jsonl.gz", DPO, "hh_rlhf", 6, {}),
    ("llamafactory/oaast_rm_zh.json", DPO, "ranked", 3, {}),
    ("medicalgpt/dpo_zh_500-excerpt.jsonl", DPO, "medicalgpt", 2, {}),
    ("llamafactory/v1_dpo_demo.jsonl", DPO, "llamafactory_v1", 2, {}),
    ("llamafactory/reason_tool_use_demo.jsonl", SFT, "openai", 2, {}),
    ("moss/harmless_conversation_1.json", SFT, "moss", 1, {}),
]


@pytest.fixture(scope="module")
def tokenizer_dir(bilingual_corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("layouts-tok")
    train_tokenizer(bilingual_corpus, directory, TokenizerConfig(vocab_size=1200, max_text_bytes=400_000))
    return directory


def read_all(path: Path, config: ChatDataConfig) -> tuple[FileLayout, list[list[list[dict]]], Stats]:
    """Every record of a file as the stage reads it: its conversations (one, or chosen and rejected)."""
    layout, found, stats = read_with_tools(path, config)
    return layout, [conversations for conversations, _ in found], stats


def read_with_tools(path: Path, config: ChatDataConfig) -> tuple[FileLayout, list[tuple[list, list]], Stats]:
    """Every record's conversations and the tools they offer."""
    layout, stats, found = FileLayout(path, config), Stats(groups=("skipped",)), []
    for number, record in read_json_records(path, stats):
        read = layout.read(record, number, stats)
        if read is not None:
            units, tools = read
            found += [(unit, tools) for unit in units]
    return layout, found, stats


def encoded(path: Path, config: ChatDataConfig, tokenizer_dir: Path, output: Path) -> tuple[dict, ChatPart]:
    sha = tokenizer_sha256_of(tokenizer_dir)
    result = encode_chat_file(path, 0, tokenizer_dir, sha, output, config)
    dtype = np.dtype(np.uint16)
    return result, ChatPart.open(output / result["file"], dtype, 2 if config.format == "dpo" else 1)


@pytest.mark.parametrize(
    ("name", "config", "layout", "kept", "skipped"), REAL_FILES, ids=[row[0] for row in REAL_FILES]
)
def test_each_real_file_is_read_in_its_layout(name, config, layout, kept, skipped, tokenizer_dir, tmp_path):
    result, part = encoded(DATA / name, config.model_copy(update={"max_skipped_share": 1}), tokenizer_dir, tmp_path)
    assert (result["layout"], result["rows"], result["skipped"]) == (layout, kept, skipped)
    assert part.units == kept


@pytest.mark.parametrize(
    ("name", "config"), [(row[0], row[1]) for row in REAL_FILES], ids=[row[0] for row in REAL_FILES]
)
def test_ids_are_what_transformers_chat_template_gives_and_the_mask_is_the_replies(name, config, tokenizer_dir):
    transformers = pytest.importorskip("transformers")
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    _, found, _ = read_with_tools(DATA / name, config)
    encoder, tokenizer = ChatEncoder(load_tokenizer(tokenizer_dir)), load_tokenizer(tokenizer_dir)
    for sides, tools in found:
        encoded = encoder.encode(sides, last_reply_only=config.format == "dpo", tools=[tools] * len(sides))
        for conversation, tokens in zip(sides, encoded):
            rendered = hf.apply_chat_template(conversation, tools=tools or None, tokenize=True, return_dict=True)
            assert tokens.ids == rendered["input_ids"]
            replies = [m for m in conversation if m["role"] == "assistant"]
            expected = replies[-1:] if config.format == "dpo" else replies
            trained = tokenizer.decode([t for t, keep in zip(tokens.ids, tokens.mask) if keep])
            assert trained == "".join(_reply_text(m) for m in expected)


def _reply_text(message: dict) -> str:
    """What a trained reply decodes to with the special tokens left out: its reasoning (between the think tokens),
    its text, its tool calls."""
    thought = f"\n{message['reasoning_content']}\n\n\n" if message.get("reasoning_content") else ""
    return thought + message["content"] + "".join(_call_text(call) for call in message.get("tool_calls", []))


def _call_text(call: dict) -> str:
    """What a tool call decodes to with the special tokens left out: its JSON between new lines."""
    return "\n" + json.dumps({"name": call["name"], "arguments": call["arguments"]}, ensure_ascii=False) + "\n"


def test_trl_conversational_pairs_keep_their_prompt():
    _, [(chosen, rejected)], _ = read_all(DATA / "trl/preference_conversational.jsonl", DPO)
    question = {"role": "user", "content": "What color is the sky?"}
    assert chosen == [question, {"role": "assistant", "content": "It is blue."}]
    assert rejected == [question, {"role": "assistant", "content": "It is green."}]


def test_each_layout_reads_what_its_record_says():
    _, [sharegpt, with_system], _ = read_all(DATA / "llamafactory/dpo_zh_demo.json", DPO)
    assert [m["role"] for m in sharegpt[0]] == ["user", "assistant"] and sharegpt[0][:-1] == sharegpt[1][:-1]
    assert [m["role"] for m in with_system[0]] == ["system", "user", "assistant"], "a pair's system turn is kept"
    _, [alpaca, with_input, _], _ = read_all(DATA / "llamafactory/alpaca_zh_demo.json", SFT)
    record = json.loads((DATA / "llamafactory/alpaca_zh_demo.json").read_text(encoding="utf-8"))[1]
    assert with_input[0][0] == {"role": "user", "content": f"{record['instruction']}\n{record['input']}"}
    _, [(binarized, _), _], _ = read_all(DATA / "firefly/dummy_dpo.jsonl", DPO)
    assert [m["role"] for m in binarized].count("user") == 1, "the prompt given twice is kept once"
    _, [[firefly], _], _ = read_all(DATA / "firefly/dummy_data.jsonl", SFT)
    assert [m["role"] for m in firefly] == ["user", "assistant"] * (len(firefly) // 2)


@pytest.mark.parametrize(
    ("name", "config", "message"),
    [
        ("llamafactory/kto_en_demo.json", DPO, "holds KTO data"),
        ("trl/unpaired_preference.jsonl", DPO, "holds KTO data"),
        ("trl/stepwise_supervision.jsonl", DPO, "holds stepwise supervision"),
        (
            "trl/preference_implicit_prompt_text.jsonl",
            DPO,
            "holds pairs of whole texts .* cannot be told from the reply",
        ),
        ("llamafactory/glaive_toolcall_zh_demo.json", DPO, r"holds SFT conversations \(sharegpt layout\): .* sft"),
        ("trl/preference_standard.jsonl", SFT, r"holds preference pairs \(trl layout\): .* --format dpo"),
        ("llamafactory/oaast_rm_zh.json", SFT, r"holds preference pairs \(ranked layout\): .* --format dpo"),
    ],
)
def test_files_that_are_not_this_kind_of_chat_data_are_refused_whole(name, config, message, tokenizer_dir, tmp_path):
    with pytest.raises(ValueError, match=f"{Path(name).name} {message}"):
        encoded(DATA / name, config, tokenizer_dir, tmp_path)
    assert not list(tmp_path.iterdir()), "no part is left behind"


def test_a_sharegpt_file_beside_a_minimind_file_is_read_in_its_own_layout(tokenizer_dir, tmp_path):
    results = [
        encoded(DATA / name, SFT.model_copy(update={"max_skipped_share": 1}), tokenizer_dir, tmp_path / str(index))[0]
        for index, name in enumerate(["minimind/sft_data.jsonl", "llamafactory/glaive_toolcall_zh_demo.json"])
    ]
    assert [(result["layout"], result["rows"]) for result in results] == [("minimind", 2), ("sharegpt", 4)]


def test_a_files_layout_and_field_names_can_be_given(tokenizer_dir, tmp_path):
    source = tmp_path / "qa.jsonl"
    source.write_text(json.dumps({"q": "1+1?", "a": "2", "id": 7}) + "\n", encoding="utf-8")
    settings = {"qa.jsonl": ChatFileConfig(layout="alpaca", fields={"instruction": "q", "output": "a"})}
    _, [[conversation]], _ = read_all(source, SFT.model_copy(update={"files": settings}))
    assert conversation == [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]
    with pytest.raises(ValueError, match="layout trl is not one of sft's"):
        FileLayout(source, SFT.model_copy(update={"files": {"qa.jsonl": ChatFileConfig(layout="trl")}}))


def test_ultrafeedback_completions_pair_the_best_and_worst_scored_and_ties_are_counted(tmp_path):
    """Records shaped as openbmb/UltraFeedback's (an instruction, completions with an overall score)."""
    records = [
        {"instruction": "Name a primary colour.", "completions": [
            {"response": "Blue.", "overall_score": 9.0}, {"response": "Grey.", "overall_score": 3.5},
            {"response": "Red, or blue.", "overall_score": 7.0}]},
        {"instruction": "Say hi.", "completions": [
            {"response": "Hi.", "overall_score": 5}, {"response": "Hello.", "overall_score": 5}]},
    ]  # fmt: skip
    source = tmp_path / "ultrafeedback.jsonl"
    source.write_text("".join(json.dumps(record) + "\n" for record in records), encoding="utf-8")
    layout, [(chosen, rejected)], stats = read_all(source, DPO)
    assert layout.layout == "ultrafeedback" and (chosen[-1]["content"], rejected[-1]["content"]) == ("Blue.", "Grey.")
    assert stats.group("skipped") == {"completions_tie": 1} and stats.first_skipped["completions_tie"] == [2]


def test_every_layout_name_the_config_offers_is_read():
    offered = set(ChatFileConfig.model_fields["layout"].annotation.__args__) - {"auto"}
    assert offered == set(READERS["sft"]) | set(READERS["dpo"])


def test_parallel_tool_calls_and_their_results_render_as_transformers_renders_them(tokenizer_dir, tmp_path):
    """OpenAI's layout: two calls in one assistant turn (arguments as JSON text), two `tool` results in a row."""
    transformers = pytest.importorskip("transformers")
    weather = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object", "properties": {}}}}
    calls = [
        {"id": "a", "type": "function", "function": {"name": "weather", "arguments": '{"city": "北京"}'}},
        {"id": "b", "type": "function", "function": {"name": "weather", "arguments": '{"city": "上海"}'}},
    ]
    record = {
        "messages": [
            {"role": "system", "content": "你是助手。"},
            {"role": "user", "content": "北京和上海天气如何？"},
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "content": "晴"},
            {"role": "tool", "tool_call_id": "b", "content": "雨"},
            {"role": "assistant", "content": "北京晴，上海雨。"},
        ],
        "tools": [weather],
    }
    source = tmp_path / "tools.jsonl"
    source.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    _, [([conversation], tools)], _ = read_with_tools(source, SFT)
    assert tools == [weather["function"]] and conversation[2]["tool_calls"][1]["arguments"] == {"city": "上海"}
    (tokens,) = ChatEncoder(load_tokenizer(tokenizer_dir)).encode([conversation], tools=[tools])
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert tokens.ids == hf.apply_chat_template(conversation, tools=tools, tokenize=True, return_dict=True)["input_ids"]
    text = load_tokenizer(tokenizer_dir).decode(tokens.ids, skip_special_tokens=False)
    assert text.count("<|im_start|>user") == 2, "the two results share one user turn"
    assert "<tool_response>\n晴\n</tool_response>\n<tool_response>\n雨\n</tool_response><|im_end|>" in text


def test_a_json_file_holding_json_lines_is_read_as_lines(tmp_path):
    """Files named .json often hold one record per line; the name does not decide, the first byte does."""
    lines = (DATA / "minimind/sft_data.jsonl").read_text(encoding="utf-8")
    source = tmp_path / "sft_data.json"
    source.write_text(lines, encoding="utf-8")
    layout, found, stats = read_all(source, SFT)
    assert (layout.layout, len(found), stats["read_as.json_lines"]) == ("minimind", len(lines.splitlines()), 1)


def test_a_loss_weight_of_zero_keeps_an_assistant_turn_out_of_the_loss(tokenizer_dir, tmp_path):
    """LLaMA-Factory's v1 layout weighs each message; 0 on an assistant turn is honoured, not ignored."""
    turns = [("user", "hi", 0.0), ("assistant", "hello", 0.0), ("user", "name?", 0.0), ("assistant", "tinylm", 1.0)]
    record = {
        "messages": [{"role": r, "content": [{"type": "text", "value": c}], "loss_weight": w} for r, c, w in turns]
    }
    odd = {"messages": [{"role": "user", "content": "a", "loss_weight": 0.5}, {"role": "assistant", "content": "b"}]}
    source = tmp_path / "weighted.jsonl"
    source.write_text(json.dumps(record) + "\n" + json.dumps(odd) + "\n", encoding="utf-8")
    _, [[conversation]], stats = read_all(source, SFT)
    assert stats.group("skipped") == {"loss_weight_not_0_or_1": 1}
    (tokens,) = ChatEncoder(load_tokenizer(tokenizer_dir)).encode([conversation])
    trained = load_tokenizer(tokenizer_dir).decode([t for t, keep in zip(tokens.ids, tokens.mask) if keep])
    assert trained == "tinylm"


def test_hh_rlhf_transcripts_split_at_their_turn_markers_and_share_all_but_the_last_reply():
    """Anthropic's layout, as shipped (.jsonl.gz): the turns both transcripts share are the prompt."""
    path = DATA / "hh-rlhf/harmless-base-test-excerpt.jsonl.gz"
    _, pairs, _ = read_all(path, DPO)
    records = [record for _, record in read_json_records(path, Stats())]
    for (chosen, rejected), record in zip(pairs, records):
        assert chosen[:-1] == rejected[:-1] and [m["role"] for m in chosen] == ["user", "assistant"] * (
            len(chosen) // 2
        )
        assert record["chosen"].endswith(chosen[-1]["content"]) and record["rejected"].endswith(rejected[-1]["content"])
        assert record["chosen"].count("\n\nHuman:") == len(chosen) // 2
    assert pairs[3][0][0] == {"role": "user", "content": "Give me a challenge"}


def test_ranked_answers_pair_the_best_with_the_worst_or_with_each_worse_one():
    """LLaMA-Factory's oaast_rm (OpenAssistant's ranked replies, best first)."""
    record = json.loads((DATA / "llamafactory/oaast_rm_zh.json").read_text("utf-8"))[0]
    _, pairs, _ = read_all(DATA / "llamafactory/oaast_rm_zh.json", DPO)
    assert [m["content"] for m in pairs[0][0]] == [record["instruction"], record["output"][0]]
    assert pairs[0][1][-1]["content"] == record["output"][-1]
    each = DPO.model_copy(update={"ranked_pairs": "best_vs_each"})
    _, pairs, _ = read_all(DATA / "llamafactory/oaast_rm_zh.json", each)
    assert len(pairs) == 9 and [rejected[-1]["content"] for _, rejected in pairs[:3]] == record["output"][1:]


def test_medicalgpt_and_llamafactory_v1_pairs_keep_their_system_turn_and_unscored_turns():
    _, [_, (chosen, rejected)], _ = read_all(DATA / "medicalgpt/dpo_zh_500-excerpt.jsonl", DPO)
    assert [m["role"] for m in chosen] == ["system", "user", "assistant"] and chosen[:-1] == rejected[:-1]
    assert chosen[-1]["content"].startswith('"愤怒的传奇') and rejected[-1]["content"].startswith(
        "根据您提供的电影情节"
    )
    _, [(chosen, rejected), _], _ = read_all(DATA / "llamafactory/v1_dpo_demo.jsonl", DPO)
    assert chosen[-1]["content"].startswith("Abdulah Hasanagic is the proud owner")
    assert rejected[-1]["content"].startswith(" Abdulah Hasanagic")
    assert chosen[0]["role"] == "system" and chosen[:-1] == rejected[:-1]


def test_typed_reasoning_and_tool_call_parts_are_read_as_reasoning_and_tool_calls():
    """LLaMA-Factory's reason_tool_use demo: assistant turns of `reasoning`, `tool_call` and `text` parts."""
    _, [[plain], [calling]], _ = read_all(DATA / "llamafactory/reason_tool_use_demo.jsonl", SFT)
    assert plain[-1]["reasoning_content"].startswith("Okay, the user is asking for schools")
    assert plain[-1]["content"].startswith("I'm sorry, but the available tools")
    call = next(m for m in calling if m.get("tool_calls"))
    assert call["tool_calls"][0]["name"] and call["content"] == "" and call["reasoning_content"]
    assert any(m["role"] == "tool" for m in calling)


def test_a_moss_conversation_file_holding_one_object_is_read_and_plugin_turns_are_counted():
    layout, [[conversation]], stats = read_all(DATA / "moss/harmless_conversation_1.json", SFT)
    assert stats.counts["read_as.json_object"] == 1 and layout.layout == "moss"
    assert [m["role"] for m in conversation] == ["system", "user", "assistant", "user", "assistant"]
    assert conversation[1]["content"] == "如果一个女性想要发展信息技术行业，她应该做些什么？"
    assert conversation[2]["content"].endswith("为你提供机会与其他女性技术人员建立联系。"), "markers stripped"
    assert "reasoning_content" not in conversation[2], "MOSS's `None` thoughts are no thoughts"
    _, found, stats = read_all(DATA / "moss/calculator_plugin_conversation_1.json", SFT)
    assert found == [] and stats.group("skipped") == {"moss_plugin_commands": 1}


def test_an_empty_reply_is_skipped_and_counted_not_trained_as_a_bare_end_of_turn(tokenizer_dir, tmp_path):
    turns = [{"from": "human", "value": "你好"}, {"from": "gpt", "value": "你好！"}]
    records = [
        {"conversations": turns},
        {"conversations": [turns[0], {"from": "gpt", "value": ""}]},
        {"conversations": [*turns, {"from": "human", "value": "再说一次"}, {"from": "gpt", "value": " \n"}]},
    ]
    source = tmp_path / "sharegpt.jsonl"
    source.write_text("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records), "utf-8")
    result, part = encoded(source, SFT.model_copy(update={"max_skipped_share": 1}), tokenizer_dir, tmp_path / "out")
    assert (result["rows"], result["skipped"], result["first_skipped"]) == (
        1,
        {"empty_reply": 2},
        {"empty_reply": [2, 3]},
    )


def test_placeholders_are_counted_and_filled_from_the_setting(tokenizer_dir, tmp_path):
    """LLaMA-Factory's identity.json: replies that say `I am {{name}}, ... developed by {{author}}`."""
    path = DATA / "llamafactory/identity.json"
    result, _ = encoded(path, SFT, tokenizer_dir, tmp_path / "as-is")
    assert result["unfilled_placeholders"] == {"name": 3, "author": 3}
    values = SFT.model_copy(update={"placeholders": {"name": "TinyLM", "author": "the tinylm team"}})
    result, part = encoded(path, values, tokenizer_dir, tmp_path / "filled")
    assert "unfilled_placeholders" not in result
    ids, mask = part.sequence(0)
    trained = load_tokenizer(tokenizer_dir).decode([int(token) for token, keep in zip(ids, mask) if keep])
    assert trained == "Hello! I am TinyLM, an AI assistant developed by the tinylm team. How can I assist you today?"
