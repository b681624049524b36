"""Chat data: real text made into conversations, tokenized with the chat template and a loss mask."""

import json
from pathlib import Path

import numpy as np
import opencc
import pytest
import torch

from tests.helpers import kill_when, make_chat_data, tiny_train_config
from tinylm.config import ChatDataConfig, TokenizerConfig
from tinylm.flows.chat_data import chat_data_flow
from tinylm.storage.manifest import read_manifest
from tinylm.tokens.chat_arrays import ChatDataManifest, ChatPart
from tinylm.tokens.chat_template import ChatEncoder
from tinylm.tokens.tokenizer import train_tokenizer
from tinylm.tokens.tokenizer_files import IM_END, THINK_TOKENS, load_tokenizer
from tinylm.training.data import open_training_data

pytestmark = pytest.mark.usefixtures("prefect_api")
MINIMIND = Path(__file__).parent / "data" / "minimind"


@pytest.fixture(scope="module")
def tokenizer_dir(bilingual_corpus, tmp_path_factory):
    directory = tmp_path_factory.mktemp("chat-tok")
    train_tokenizer(bilingual_corpus, directory, TokenizerConfig(vocab_size=1200, max_text_bytes=400_000))
    return directory


@pytest.fixture(scope="module")
def conversations(zuozhuan):
    """Continuation dialogues over Zuozhuan lines: a user turn with the first half, the assistant's with the rest."""
    lines = [line.strip() for line in zuozhuan.read_text(encoding="utf-8").splitlines() if len(line.strip()) > 40][:60]
    dialogues = []
    for number, line in enumerate(lines):
        half = len(line) // 2
        messages = [{"role": "user", "content": f"续写：{line[:half]}"}, {"role": "assistant", "content": line[half:]}]
        if number % 3 == 0:
            messages.insert(0, {"role": "system", "content": "You are a classical Chinese scholar."})
        if number % 4 == 0:
            messages += [
                {"role": "user", "content": "Translate the first sentence, please."},
                {"role": "assistant", "content": "Spring, the king's first month."},
            ]
        dialogues.append(messages)
    return dialogues


def read_units(directory: Path, part: str = "part-00000") -> list[list[tuple[list[int], list[int]]]]:
    """Every unit of a part as its sequences' (ids, mask) lists: one for a conversation, chosen and rejected for a
    pair."""
    manifest = read_manifest(directory, ChatDataManifest)
    opened = ChatPart.open(directory / part, np.dtype(manifest.dtype), manifest.sequences_per_unit)
    return [[(ids.tolist(), mask.tolist()) for ids, mask in opened.unit(row)] for row in range(opened.units)]


def sequences(directory: Path, part: str = "part-00000") -> list[tuple[list[int], list[int]]]:
    return [sequence for unit in read_units(directory, part) for sequence in unit]


def write_jsonl(path, records, raw_lines=()):
    with open(path, "wb") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n")
        for raw in raw_lines:
            handle.write(raw + b"\n")
    return str(path)


def test_ids_match_transformers_chat_template_and_mask_covers_assistant_turns(tokenizer_dir, conversations, tmp_path):
    transformers = pytest.importorskip("transformers")
    source = write_jsonl(tmp_path / "sft.jsonl", [{"conversations": messages} for messages in conversations])
    # The messages as they are (the Zuozhuan has characters t2s would still change): the template is under test.
    manifest = make_chat_data(
        [source], tokenizer_dir, tmp_path / "out", ChatDataConfig(max_seq_len=4096, simplify=False)
    )
    rows = sequences(tmp_path / "out")
    assert manifest["stats"]["rows"] == len(rows) == len(conversations)
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer = load_tokenizer(tokenizer_dir)
    for messages, (ids, mask) in zip(conversations, rows):
        assert ids == hf.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        trained = [token for token, keep in zip(ids, mask) if keep]
        expected = "".join(m["content"] + IM_END for m in messages if m["role"] == "assistant")
        assert tokenizer.decode(trained, skip_special_tokens=False) == expected
    assert manifest["stats"]["trained_tokens"] == sum(sum(mask) for _, mask in rows)


def test_special_token_text_inside_a_message_stays_text(tokenizer_dir):
    encoder = ChatEncoder(load_tokenizer(tokenizer_dir))
    (tokens,) = encoder.encode(
        [[{"role": "user", "content": "say <|im_end|> now"}, {"role": "assistant", "content": "ok"}]]
    )
    assert tokens.ids.count(encoder.im_end) == 2, "one per turn: the literal in the text is not a turn end"
    (prompt,) = encoder.encode([[{"role": "user", "content": "hi"}]], generation_prompt=True)
    assert (
        load_tokenizer(tokenizer_dir).decode(prompt.ids, skip_special_tokens=False).endswith("<|im_start|>assistant\n")
    )
    assert sum(prompt.mask) == 0


def test_long_conversations_are_cut_and_ones_with_no_assistant_token_left_dropped(
    tokenizer_dir, conversations, tmp_path
):
    source = write_jsonl(tmp_path / "sft.jsonl", [{"conversations": messages} for messages in conversations])
    encoded = ChatEncoder(load_tokenizer(tokenizer_dir)).encode(conversations)
    first_trained = sorted(tokens.mask.index(1) for tokens in encoded)
    limit = first_trained[len(first_trained) // 2]
    short = make_chat_data(
        [source], tokenizer_dir, tmp_path / "short", ChatDataConfig(max_seq_len=limit, simplify=False)
    )
    rows = sequences(tmp_path / "short")
    assert max(len(ids) for ids, _ in rows) <= limit
    stats = short["stats"]
    assert stats["truncated"] == sum(1 for tokens in encoded if len(tokens.ids) > limit) > 0
    assert stats["rows"] == sum(1 for position in first_trained if position < limit) > 0
    assert stats["skipped"]["no_assistant_token_within_max_seq_len"] == len(conversations) - stats["rows"] > 0
    assert stats["rows"] == len(rows) and all(sum(mask) > 0 for _, mask in rows)


def test_dpo_pairs_keep_chosen_and_rejected_with_their_masks(tokenizer_dir, conversations, tmp_path):
    pairs = [
        {"chosen": chosen[-2:], "rejected": chosen[-2:-1] + rejected[-1:]}
        for chosen, rejected in zip(conversations, conversations[1:] + conversations[:1])
    ]
    source = write_jsonl(tmp_path / "dpo.jsonl", pairs)
    manifest = make_chat_data(
        [source], tokenizer_dir, tmp_path / "out", ChatDataConfig(format="dpo", max_seq_len=4096, simplify=False)
    )
    units = read_units(tmp_path / "out")
    assert manifest["format"] == "dpo" and len(units) == len(pairs)
    tokenizer = load_tokenizer(tokenizer_dir)
    for pair, unit in zip(pairs, units):
        for side, (ids, mask) in zip(("chosen", "rejected"), unit):
            trained = [token for token, keep in zip(ids, mask) if keep]
            assert tokenizer.decode(trained) == pair[side][-1]["content"]
        (chosen_ids, chosen_mask), (rejected_ids, _) = unit
        prompt_length = chosen_mask.index(1)
        assert chosen_ids[:prompt_length] == rejected_ids[:prompt_length], "same prompt"


def test_minimind_dpo_pairs_whose_prompts_differ_are_skipped_and_only_the_final_reply_is_trained(
    tokenizer_dir, tmp_path
):
    pairs = [json.loads(line) for line in (MINIMIND / "dpo_data.jsonl").read_text(encoding="utf-8").splitlines()]
    # MiniMind's toy pairs differ before their last reply (a user turn in the first, an assistant turn in the
    # second): no single prompt is answered two ways. The same second conversation, made into a true pair:
    fixed = {"chosen": pairs[1]["chosen"], "rejected": pairs[1]["chosen"][:-1] + pairs[1]["rejected"][-1:]}
    source = write_jsonl(tmp_path / "dpo.jsonl", [*pairs, fixed])
    config = ChatDataConfig(format="dpo", max_seq_len=4096, max_skipped_share=0.9)
    manifest = make_chat_data([source], tokenizer_dir, tmp_path / "out", config)
    assert manifest["stats"]["skipped"] == {"prompts_differ": 2} and manifest["stats"]["rows"] == 1
    assert manifest["scored_turns"] == "final_reply"
    (unit,) = read_units(tmp_path / "out")
    tokenizer = load_tokenizer(tokenizer_dir)
    for side, (ids, mask) in zip(("chosen", "rejected"), unit):
        trained = [token for token, keep in zip(ids, mask) if keep]
        assert tokenizer.decode(trained) == fixed[side][-1]["content"], (
            "the earlier assistant turn is prompt, not target"
        )


def test_minimind_dpo_pairs_train_every_assistant_turn_the_minimind_way(tokenizer_dir, tmp_path):
    source = MINIMIND / "dpo_data.jsonl"
    pairs = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()]
    config = ChatDataConfig(format="dpo", max_seq_len=4096, dpo_turns="all")
    manifest = make_chat_data([str(source)], tokenizer_dir, tmp_path / "out", config)
    assert manifest["stats"]["rows"] == len(pairs) and manifest["scored_turns"] == "assistant_turns"
    tokenizer = load_tokenizer(tokenizer_dir)
    for unit, pair in zip(read_units(tmp_path / "out"), pairs):
        for (ids, mask), side in zip(unit, ("chosen", "rejected")):
            replies = [turn["content"] for turn in pair[side] if turn["role"] == "assistant"]
            trained = tokenizer.decode([token for token, keep in zip(ids, mask) if keep])
            assert trained == "".join(replies), "every assistant turn, and only those, is scored"


def test_a_file_mostly_skipped_fails_the_stage_naming_its_main_reason(tokenizer_dir, tmp_path):
    pairs = MINIMIND / "dpo_data.jsonl"
    with pytest.raises(
        ValueError,
        match=r"dpo_data.jsonl: 2 of 2 records skipped, 2 as prompts_differ \(first at 1, 2\); set dpo_turns: all",
    ):
        make_chat_data([str(pairs)], tokenizer_dir, tmp_path / "out", ChatDataConfig(format="dpo", max_seq_len=4096))
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_traditional_chat_data_is_simplified_like_the_corpus_unless_switched_off(tokenizer_dir, constitution, tmp_path):
    lines = [line for line in constitution.read_text(encoding="utf-8").splitlines() if len(line) > 20][:6]
    traditional = [opencc.OpenCC("s2t").convert(line) for line in lines]
    to_simplified = opencc.OpenCC("t2s").convert

    def dialogues(texts: list[str]) -> list[dict]:
        return [
            {"conversations": [{"role": "user", "content": text[:10]}, {"role": "assistant", "content": text}]}
            for text in texts
        ]

    converted = make_chat_data(
        [write_jsonl(tmp_path / "tw.jsonl", dialogues(traditional))], tokenizer_dir, tmp_path / "a", ChatDataConfig()
    )
    simplified = dialogues([to_simplified(text) for text in traditional])
    reference = make_chat_data(
        [write_jsonl(tmp_path / "cn.jsonl", simplified)], tokenizer_dir, tmp_path / "b", ChatDataConfig()
    )
    ids = {name: [ids for ids, _ in sequences(tmp_path / name)] for name in ("a", "b")}
    assert ids["a"] == ids["b"], "the same ids as the text simplified beforehand"
    assert converted["stats"]["converted_messages"] > len(lines) and reference["stats"]["converted_messages"] == 0
    kept = make_chat_data([tmp_path / "tw.jsonl"], tokenizer_dir, tmp_path / "c", ChatDataConfig(simplify=False))
    assert kept["stats"]["converted_messages"] == 0
    assert [ids for ids, _ in sequences(tmp_path / "c")] != ids["a"]


def test_bad_records_are_skipped_and_counted_by_reason_with_their_first_lines(tokenizer_dir, conversations, tmp_path):
    good = [{"conversations": messages} for messages in conversations[:5]]
    answer = {"role": "assistant", "content": "ok"}
    bad = [
        {"text": "no conversations here"},  # line 6
        {"conversations": []},
        {"conversations": [{"role": "narrator", "content": "x"}, answer]},
        {"conversations": [{"role": "user", "content": "only a question"}]},
        {"conversations": [{"role": "user"}, answer]},  # line 10
        {"conversations": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]},
        {"conversations": [{"content": "who am I"}, answer]},
        {"conversations": [{"role": "user", "content": 42}, answer]},
        {"conversations": ["just a string", answer]},
        {"conversations": [{"role": "narrator", "content": "again"}, answer]},  # line 15
    ]
    raw = [
        b'{"conversations": [',
        b'{"conversations": [{"role": "user", "content": "caf\xe9"}, {"role": "assistant", "content": "ok"}]}',
    ]
    source = write_jsonl(tmp_path / "mixed.jsonl", good + bad, raw)
    config = ChatDataConfig(max_skipped_share=1)  # most of this file is skipped, on purpose
    stats = make_chat_data([source], tokenizer_dir, tmp_path / "out", config)["stats"]
    assert stats["records"] == 16 and stats["rows"] == 5
    assert stats["skipped"] == {
        "content_not_text": 1,
        "invalid_json": 1,
        "message_not_an_object": 1,
        "missing_content": 1,
        "missing_role": 1,
        "no_assistant_turn": 1,
        "no_conversations_field": 1,
        "not_a_conversation": 1,
        "null_content": 1,
        "undecodable_bytes": 1,
        "unknown_role": 2,
    }
    assert stats["first_skipped"]["unknown_role"] == [8, 15] and stats["first_skipped"]["null_content"] == [11]
    assert stats["first_skipped"]["invalid_json"] == [16] and stats["first_skipped"]["undecodable_bytes"] == [17]


def test_inputs_with_nothing_usable_are_a_clear_error(tokenizer_dir, tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="no usable sft records"):
        make_chat_data([str(empty)], tokenizer_dir, tmp_path / "out", ChatDataConfig())


def test_flow_tokenizes_files_in_parallel_and_reuses_a_finished_run(
    prefect_api, tokenizer_dir, conversations, tmp_path
):
    files = [
        write_jsonl(tmp_path / f"sft-{i}.jsonl", [{"conversations": messages} for messages in conversations[i::2]])
        for i in range(2)
    ]
    output = str(tmp_path / "out")
    first = chat_data_flow(files, str(tokenizer_dir), output, ChatDataConfig())
    assert not first["reused"] and [part["rows"] for part in first["parts"]] == [30, 30]
    assert chat_data_flow(files, str(tokenizer_dir), output, ChatDataConfig())["reused"]
    together = write_jsonl(
        tmp_path / "all.jsonl", [{"conversations": messages} for i in range(2) for messages in conversations[i::2]]
    )
    whole = make_chat_data([together], tokenizer_dir, tmp_path / "together", ChatDataConfig())
    assert whole["stats"]["tokens"] == first["stats"]["tokens"]
    in_parts = [ids for part in first["parts"] for ids, _ in sequences(tmp_path / "out", part["file"])]
    assert [ids for ids, _ in sequences(tmp_path / "together")] == in_parts


def test_reasoning_becomes_think_tokens_as_transformers_renders_it_and_minimind_r1_replies_keep_theirs(
    tokenizer_dir, tmp_path
):
    transformers = pytest.importorskip("transformers")
    tokenizer = load_tokenizer(tokenizer_dir)
    think = [tokenizer.token_to_id(token) for token in THINK_TOKENS]
    messages = [
        {"role": "user", "content": "1+1等于几？"},
        {"role": "assistant", "content": "等于2。", "reasoning_content": "一加一，两个一合起来。"},
    ]
    r1 = [json.loads(line) for line in (MINIMIND / "r1_data.jsonl").read_text(encoding="utf-8").splitlines()]
    source = write_jsonl(tmp_path / "reasoning.jsonl", [{"conversations": messages}, *r1])
    manifest = make_chat_data(
        [source], tokenizer_dir, tmp_path / "out", ChatDataConfig(max_seq_len=4096, simplify=False)
    )
    assert manifest["stats"]["rows"] == 3
    hf = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    for record, (ids, mask) in zip([{"conversations": messages}, *r1], sequences(tmp_path / "out")):
        assert ids == hf.apply_chat_template(record["conversations"], tokenize=True, return_dict=True)["input_ids"]
        assert [ids.count(token) for token in think] == [1, 1], "each marker is one special token, not its characters"
        assert all(mask[ids.index(token)] == 1 for token in think), "the model learns to open and close its thinking"
    (ids, _), *_ = sequences(tmp_path / "out")
    assert (
        tokenizer.decode(ids, skip_special_tokens=False).count("<think>\n一加一，两个一合起来。\n</think>\n\n等于2。")
        == 1
    )
    user_literal = ChatEncoder(tokenizer).encode(
        [[{"role": "user", "content": "<think>"}, {"role": "assistant", "content": "ok"}]]
    )
    assert think[0] not in user_literal[0].ids, "outside an assistant's reply the marker stays text"


def test_think_token_weight_weighs_the_markers_in_training_batches(tokenizer_dir, tmp_path):
    source = MINIMIND / "r1_data.jsonl"
    make_chat_data([source], tokenizer_dir, tmp_path / "out", ChatDataConfig(max_seq_len=1024, validation_fraction=0))
    tokenizer = load_tokenizer(tokenizer_dir)
    think = [tokenizer.token_to_id(token) for token in THINK_TOKENS]
    plain, weighted = (
        open_training_data(tmp_path / "out", tiny_train_config(seq_len=1023, batch_size=2, think_token_weight=w)).batch(
            0, np.arange(2), 0
        )
        for w in (1.0, 10.0)
    )
    markers = torch.isin(weighted.targets, torch.tensor(think))
    assert markers.sum() == 4 and torch.all(weighted.weights[markers] == 10) and torch.all(plain.weights[markers] == 1)
    assert torch.equal(weighted.weights[~markers], plain.weights[~markers])


def test_files_are_mixed_by_weight_into_one_shuffled_stream_with_a_stable_validation_split(
    tokenizer_dir, conversations, tmp_path
):
    files = [
        write_jsonl(tmp_path / f"{name}.jsonl", [{"conversations": m} for m in conversations[i::2]])
        for i, name in enumerate("ab")
    ]
    config = ChatDataConfig(source_weights={"a.jsonl": 2, "b.jsonl": 0.5}, validation_fraction=0.2, seed=3)
    manifest = make_chat_data(files, tokenizer_dir, tmp_path / "mixed", config)
    order = np.fromfile(tmp_path / "mixed" / "order.bin", dtype="<i8")
    validation = np.fromfile(tmp_path / "mixed" / "validation.bin", dtype="<i8")
    units = [part["rows"] for part in manifest["parts"]]
    in_a = order < units[0]
    train = [part["rows"] - part["validation_rows"] for part in manifest["parts"]]
    assert in_a.sum() == 2 * train[0] and len(set(order[in_a])) == train[0], "file a twice"
    assert 0 < (~in_a).sum() < train[1] and len(set(order[~in_a])) == (~in_a).sum(), "a seeded half of file b, once"
    assert 0 < len(validation) == sum(part["validation_rows"] for part in manifest["parts"]) and not set(
        validation
    ) & set(order)
    assert (
        3 < np.flatnonzero(~in_a).mean() < len(order) - 3
        and in_a[: len(order) // 2].any()
        and (~in_a)[: len(order) // 2].any()
    )
    alone = make_chat_data(files[:1], tokenizer_dir, tmp_path / "alone", config)
    assert alone["parts"][0]["validation_rows"] == manifest["parts"][0]["validation_rows"], (
        "a record's split is its own"
    )
    again = make_chat_data(files, tokenizer_dir, tmp_path / "again", config)
    assert np.array_equal(np.fromfile(tmp_path / "again" / "order.bin", dtype="<i8"), order) and again[
        "train_units"
    ] == len(order)


def test_chat_data_killed_mid_write_and_run_again_ends_as_if_never_killed(
    prefect_api, tokenizer_dir, conversations, tmp_path
):
    records = [{"conversations": messages} for messages in conversations] * 200
    files = [write_jsonl(tmp_path / f"sft-{index}.jsonl", records[index::2]) for index in range(2)]
    reference = make_chat_data(files, tokenizer_dir, tmp_path / "reference", ChatDataConfig())
    output = tmp_path / "killed"
    code = (
        "from tinylm.flows.chat_data import chat_data_flow; from tinylm.config import ChatDataConfig; "
        f"chat_data_flow({files!r}, {str(tokenizer_dir)!r}, {str(output)!r}, ChatDataConfig())"
    )
    kill_when(code, lambda: any(output.glob(".part-*.tmp-*/ids.bin")), env={"PREFECT_API_URL": prefect_api})
    assert read_manifest(output) is None and not list(output.glob("part-*/ids.bin")), (
        "no part under its final name half-written"
    )
    rerun = make_chat_data(files, tokenizer_dir, output, ChatDataConfig())
    assert not rerun["reused"] and rerun["stats"] == reference["stats"]
    for name in ("order.bin", "validation.bin", "part-00000/ids.bin", "part-00001/mask.bin", "part-00001/offsets.bin"):
        assert (output / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert sorted(p.name for p in output.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
