"""Pydantic configuration, one model per stage, composed into the pipeline's.

These models are the flows' parameters, so the Prefect UI renders them as forms, and
they load from YAML for the command line. They hold settings only; where data lives
(input and output paths) is passed to each flow beside its config, which lets the
pipeline place every stage under one workspace while each flow stays usable alone.
Defaults are for a small model on a laptop: scale by changing numbers, not code.
"""

from __future__ import annotations

import re
from fnmatch import fnmatch
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, model_validator

from tinylm.model.config import ModelConfig
from tinylm.storage.layout import stage_dir

# The byte alphabet and the special tokens of tokens/tokenizer_files.py (a test keeps the two in step).
MIN_VOCAB_SIZE = 266


WORKSPACE_DEFAULT = "workspace"
WORKSPACE_DESCRIPTION = (
    "stages, checkpoints and the MLflow store go here; a relative path is taken from the directory the "
    "command or the serving process (deployments/serve.py) started in, so give an absolute one in the Prefect UI"
)


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def computing(self, *also: str) -> dict:
        """The settings, as JSON, that decide what a stage computes: all but where its work runs (`runner`) and the
        fields named in `also`. Stage fingerprints hash these, so a corpus made on Ray is reused on threads."""
        return self.model_dump(mode="json", exclude={"runner", *also})


def first_match(patterns: dict[str, str], source: str) -> str | None:
    """The value of the first glob pattern that `source` matches (per-source settings, first pattern wins)."""
    return next((value for pattern, value in patterns.items() if fnmatch(source, pattern)), None)


class TemplateAlternative(_Settings):
    """One way a wiki template shows its text: `show` formats its arguments ("{1} {unit}"), when its arguments hold
    those words."""

    show: str = Field(description='how the template shows: its arguments by name or position in braces ("{1} {unit}")')
    when: dict[str, list[str]] = Field(
        {}, description="only when these arguments hold one of these words (none: always)"
    )


# What a kept template shows: one format, or alternatives tried in order (see corpus/wiki/prose_templates.toml).
TemplateRule = str | list[str | TemplateAlternative]


class ExtractConfig(_Settings):
    """How raw files become documents."""

    text_mode: Literal["paragraph", "line"] = Field(
        "paragraph", description="txt inputs: one document per blank-line-separated block, or per line"
    )
    jsonl_text_field: str = Field("text", description="jsonl inputs: the field that holds the text")
    parquet_text_column: str = Field("text", description="parquet inputs: the column that holds the text")
    namespaces: list[int] = Field([0], description="Wikipedia: namespaces to keep (0 = articles)")
    skip_disambiguation: bool = Field(True, description="Wikipedia: skip disambiguation pages")
    keep_headings: bool = Field(True, description="Wikipedia: keep section headings as their own lines")
    tables: Literal["keep", "drop"] = Field(
        "keep",
        description="Wikipedia: keep: a table's caption, then a line per row with its cells between ' | ' (navboxes "
        "and infoboxes dropped); drop: tables leave no text",
    )
    variant: str = Field("zh-hans", description="Wikipedia: which -{zh-hans:...;zh-hant:...}- variant to keep")
    templates: dict[str, TemplateRule] = Field(
        {},
        description="Wikipedia: templates whose text is kept, added to or overriding the built-in ones "
        "(docs/corpus.md, kept templates)",
    )
    template_aliases: dict[str, str] = Field(
        {}, description="Wikipedia: other names of kept templates ({'語言': 'lang'})"
    )
    workers: int = Field(
        0, ge=0, description="parallel extraction processes; 0 = one per CPU, 1 = in the flow's process"
    )
    range_bytes: int = Field(
        64 << 20, ge=1, description="multistream dumps: compressed bytes per parallel task (whole bz2 streams)"
    )


OpenccConfig = Literal["t2s", "tw2s", "tw2sp", "hk2s", "hk2sp"]


class ConvertConfig(_Settings):
    """Traditional to simplified Chinese, applied to documents detected as Chinese."""

    backend: Literal["opencc", "zhconv"] = Field(
        "opencc", description="the converter: OpenCC (phrase-aware) or zhconv (MediaWiki's tables)"
    )
    opencc_config: OpenccConfig = Field(
        "t2s",
        description="OpenCC's conversion: t2s (traditional), tw2s and tw2sp (Taiwan, the latter with its phrases), "
        "hk2s and hk2sp (Hong Kong)",
    )
    source_configs: dict[str, OpenccConfig] = Field(
        {},
        description="an OpenCC conversion per document source, by glob on the source name ({'tw_*': 'tw2sp'}); "
        "the first pattern that matches wins over opencc_config, and over backend",
    )
    detect_regions: bool = Field(
        True,
        description="with t2s, convert text that shows it was written in Taiwan's or Hong Kong's words (by the "
        "words and character forms only that region uses) with that region's character forms (tw2s, hk2s) and a "
        "vetted list of words that mean one thing everywhere (軟體 → 软件); never OpenCC's phrase tables",
    )
    zhconv_locale: Literal["zh-hans", "zh-cn"] = Field(
        "zh-hans", description="zhconv's target: zh-hans (simplified) or zh-cn (mainland usage)"
    )
    cjk_threshold: float = Field(
        0.3,
        ge=0,
        le=1,
        description="share of East Asian characters among letters from which text is Chinese, Japanese or Korean",
    )
    language_id: Literal["fasttext", "script"] = Field(
        "fasttext",
        description="how documents without a language get one: fasttext (Japanese by kana, Korean by Hangul, Chinese "
        "by Han characters, any other language by fastText's lid.176 model) or script (zh by Han characters, else en)",
    )

    def for_source(self, source: str) -> ConvertConfig:
        """The settings a document of `source` is converted with: its pattern's OpenCC config, or these."""
        chosen = first_match(self.source_configs, source)
        if chosen is None:
            return self
        return self.model_copy(update={"backend": "opencc", "opencc_config": chosen, "source_configs": {}})


FilterPreset = Literal["web", "wiki", "lines"]
# The built-in quality rules (tinylm/corpus/quality.py), in their default order: cheapest first.
QUALITY_RULES = (
    "length",
    "words",
    "script",
    "symbols",
    "digits",
    "repeated_lines",
    "repeated_ngrams",
    "punctuation",
)
# What each preset sets; the fields it does not name keep their values. `web` is the fields' defaults (Gopher's and
# FineWeb's rules); `wiki` lets short articles and their unpunctuated headings through; `lines` judges one-line
# documents (MiniMind's pretraining jsonl, sentence lists) on what a line can show.
FILTER_PRESETS: dict[str, dict[str, float | int]] = {
    "web": {},
    "wiki": {"min_words": 20, "min_punctuated_line_share": 0.05},
    "lines": {"min_chars": 5, "min_words": 1, "max_duplicate_line_share": 1.0, "min_punctuated_line_share": 0.0},
}


class FilterConfig(_Settings):
    """Quality rules; a document failing one is dropped and counted under the rule's name.

    Defaults keep encyclopedic prose in both languages and drop stubs, lists, tables of
    numbers and boilerplate (the Gopher and FineWeb rules, adapted to Chinese by using
    characters where they use words). A preset sets the thresholds for a kind of source,
    for every document or for the sources matching a pattern.
    """

    preset: FilterPreset | None = Field(
        None,
        description="thresholds for a kind of source, over the fields below: web (the defaults), wiki (short "
        "articles and headings pass), lines (one-line documents, as MiniMind's pretraining data); None = the fields",
    )
    languages: list[str] = Field(
        [],
        description="keep only documents in these languages (zh, en, ja, ko, de… as convert.language_id labels "
        "them); the others are dropped as other_language; [] keeps every language",
    )
    decontaminate: list[str] = Field(
        [],
        description="evaluation sets whose questions no training document may contain: benchmark folders as "
        "tinylm eval reads them, or text files of one text a line; a match drops the document as contaminated",
    )
    decontamination_ngram: int = Field(
        13, ge=4, description="decontamination: consecutive units shared (words, or Chinese characters) that match"
    )
    source_presets: dict[str, FilterPreset] = Field(
        {},
        description="a preset per document source, by glob on the source name (zhwiki, pretrain_hq, web-*); "
        "the first pattern that matches wins over preset",
    )

    min_chars: int = Field(20, ge=0, description="too_short: fewer characters")
    max_chars: int = Field(2_000_000, ge=1, description="too_long: more characters")
    min_words: int = Field(50, ge=0, description="too_few_words: non-Chinese documents with fewer words (stubs)")
    min_script_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="wrong_script: share of letters in the document's own script (CJK for zh, Latin otherwise)",
    )
    max_symbol_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="too_many_symbols: symbol characters (#, |, arrows, box drawing...; not punctuation)",
    )
    max_digit_share: float = Field(0.3, ge=0, le=1, description="too_many_digits: digit characters")
    max_duplicate_line_share: float = Field(
        0.3, ge=0, le=1, description="repeated_lines: lines that repeat another line"
    )
    max_top_ngram_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="repeated_ngrams: characters covered by the most frequent word (or character) 2-gram",
    )
    min_punctuated_line_share: float = Field(
        0.12,
        ge=0,
        le=1,
        description="unpunctuated_lines: share of lines ending in punctuation, for documents of 3+ lines",
    )
    rules: list[str] = Field(
        list(QUALITY_RULES),
        min_length=0,
        max_length=64,
        description="the quality rules in the order they judge (a document is dropped by the first it breaks): "
        f"the built-in {', '.join(QUALITY_RULES)}, and your own as package.module:Class or file.py:Class "
        "(a tinylm.corpus.rules.Rule); leave one out to switch it off",
    )
    rule_settings: dict[str, dict[str, Any]] = Field(
        {},
        description="settings of your own rules, by their name in rules: validated by the rule's Settings model",
    )
    chat_markers: Literal["keep", "strip"] = Field(
        "keep",
        description="text wrapped in chat special tokens (<|im_start|>…<|im_end|>, as in MiniMind's "
        "pretrain_hq.jsonl): the filters and dedup always judge it without them; keep them in the stored text "
        "(MiniMind trains on them) or strip them",
    )

    def for_source(self, source: str) -> tuple[str, FilterConfig]:
        """The preset a document of `source` is judged with ("fields" for none), and the rules it makes."""
        preset = first_match(self.source_presets, source) or self.preset
        if preset is None:
            return "fields", self
        return preset, self.model_copy(update=FILTER_PRESETS[preset])

    @model_validator(mode="after")
    def _lengths_in_order(self) -> FilterConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(
                f"min_chars {self.min_chars} is above max_chars {self.max_chars}: every document would be dropped"
            )
        return self

    @model_validator(mode="after")
    def _rules_named_once(self) -> FilterConfig:
        unknown = [name for name in self.rules if name not in QUALITY_RULES and ":" not in name]
        if unknown:
            raise ValueError(
                f"rules: {', '.join(unknown)} is neither a built-in rule ({', '.join(QUALITY_RULES)}) "
                "nor package.module:Class / file.py:Class"
            )
        if len(set(self.rules)) < len(self.rules):
            raise ValueError("rules: a rule is named twice")
        stray = sorted(set(self.rule_settings) - set(self.rules))
        if stray:
            raise ValueError(f"rule_settings: {', '.join(stray)} is not in rules")
        return self


class DedupConfig(_Settings):
    """Exact and MinHash LSH near-duplicate removal."""

    exact: bool = Field(True, description="drop documents whose normalised text was seen before")
    near: bool = Field(True, description="drop near duplicates found by MinHash LSH")
    num_perm: int = Field(128, ge=16, description="MinHash permutations per signature: more are more exact and slower")
    threshold: float = Field(
        0.8, gt=0, lt=1, description="Jaccard similarity above which documents are near duplicates"
    )
    verify: bool = Field(True, description="confirm LSH candidates by the Jaccard their signatures estimate")
    recall_weight: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="LSH banding: weight of false negatives against false positives (datasketch weights)",
    )
    lsh_storage: Literal["local", "redis"] = Field(
        "local",
        description="local: sorted band tables beside the index's parquet, memory-mapped, so a run's lookups "
        "cost the same whatever the index's size; redis: datasketch's LSH on Redis storage, shared across machines",
    )
    redis_url: str = Field("redis://127.0.0.1:6379/0", description="Redis for lsh_storage: redis")
    redis_prefix: str = Field("tinylm", description="key prefix of this index in Redis")
    zh_ngram: int = Field(5, ge=1, description="character shingle size for Chinese")
    en_ngram: int = Field(5, ge=1, description="word shingle size for English")
    seed: int = Field(
        1,
        ge=0,
        lt=1 << 32,
        description="the MinHash permutations' seed: an index only matches signatures made with its own",
    )


class RunnerConfig(_Settings):
    """Where the data stages' task runs execute: threads of the flow's process (their work in a
    process pool), or a Dask or Ray cluster, local or at any address."""

    kind: Literal["threads", "dask", "ray"] = Field(
        "threads", description="threads, dask (needs prefect-dask) or ray (needs prefect-ray)"
    )
    dask_address: str | None = Field(
        None, description="scheduler of an existing Dask cluster (tcp://host:8786); None = a local cluster for the run"
    )
    ray_address: str | None = Field(
        None, description="an existing Ray cluster (ray://host:10001); None = a local Ray for the run"
    )


class CorpusConfig(_Settings):
    """Raw files to a clean, deduplicated corpus."""

    runner: RunnerConfig = Field(RunnerConfig(), description="where the stage's tasks run")
    extract: ExtractConfig = Field(ExtractConfig(), description="how raw files become documents")
    convert: ConvertConfig = Field(ConvertConfig(), description="traditional to simplified Chinese")
    filters: FilterConfig = Field(FilterConfig(), description="quality rules")
    dedup: DedupConfig = Field(DedupConfig(), description="exact and near-duplicate removal")
    keep_rejected: bool = Field(
        False,
        description="write every dropped document to rejected/REASON/ in the corpus folder (a filter rule's name, "
        "exact_duplicate, near_duplicate, near_duplicate_of_index), to see what each rule costs",
    )


class TokenizerConfig(_Settings):
    """Byte-level BPE training."""

    vocab_size: int = Field(
        6400,
        ge=MIN_VOCAB_SIZE,
        description=f"including the byte alphabet (256) and the special tokens; at least {MIN_VOCAB_SIZE}",
    )
    min_frequency: int = Field(2, ge=1, description="a pair of tokens merges only if it occurs at least this often")
    max_text_bytes: int = Field(
        1_000_000_000, ge=1, description="bytes of UTF-8 text sampled for training: the bound on its memory"
    )
    language_weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="share of the sample per language (`lang` of the documents; 1 for a language not named); "
        "a language with less text passes its share on to the others",
    )
    seed: int = Field(0, ge=0, description="chooses the sample and the held-out documents")
    heldout_fraction: float = Field(
        0.01, ge=0, lt=1, description="documents never sampled, for measuring compression on unseen text"
    )
    heldout_bytes: int = Field(1_000_000, ge=0, description="held-out text per language the compression is measured on")


class ShardsConfig(_Settings):
    """Token shards for pretraining."""

    runner: RunnerConfig = Field(RunnerConfig(), description="where the corpus parts are encoded")
    shard_tokens: int = Field(1 << 24, ge=16, description="tokens per shard file (the last shard may be shorter)")
    batch_documents: int = Field(1024, ge=1, description="documents per encode_batch call")
    source_weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="copies of each source's documents in the training shards: 2 = twice (the repeat in a later pass), "
        "0.5 = a seeded half, 0 = none; sources not named count once",
    )
    shuffle_buffer: int = Field(
        10_000, ge=1, description="documents shuffled together on their way to the shards (1 = no shuffle)"
    )
    validation_fraction: float = Field(
        0.005, ge=0, lt=1, description="share of documents, chosen by seed, written as validation shards instead"
    )
    seed: int = Field(
        0, ge=0, description="fixes the validation split, the fractional copies, the interleaving and the shuffle"
    )


ChatLayout = Literal[
    "auto", "minimind", "sharegpt", "openai", "alpaca", "firefly", "prompt_completion", "trl",
    "ultrafeedback_binarized", "ultrafeedback", "moss", "ranked", "hh_rlhf", "medicalgpt", "llamafactory_v1",
]  # fmt: skip


class ChatFileConfig(_Settings):
    """How one chat-data file is read, where telling its layout from its fields is not enough (as LLaMA-Factory's
    dataset_info.json says it per data set)."""

    layout: ChatLayout = Field(
        "auto", description="the file's layout (see docs/post-training.md); auto: told from its first record's fields"
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="the layout's field names as this file spells them, e.g. {conversations: dialog, instruction: q}",
    )


class ChatDataConfig(_Settings):
    """Conversations (SFT) or preference pairs (DPO) in jsonl, tokenized with the chat template for fine-tuning."""

    runner: RunnerConfig = Field(RunnerConfig(), description="where the files are encoded, one task each")
    format: Literal["sft", "dpo"] = Field(
        "sft",
        description="sft: conversations to learn the assistant's turns of (MiniMind, ShareGPT, OpenAI messages, "
        "Alpaca, Firefly, MOSS, TRL prompt-completion); dpo: preference pairs (MiniMind, TRL, UltraFeedback, "
        "HH-RLHF, MedicalGPT, LLaMA-Factory, ranked answers); each file's layout is told from its fields",
    )
    ranked_pairs: Literal["best_vs_each", "best_vs_worst"] = Field(
        "best_vs_worst",
        description="dpo, for answers ranked or scored several to a prompt (OpenAssistant, UltraFeedback): the best "
        "against the worst alone, or against each worse answer (more pairs, each prompt weighing more)",
    )
    placeholders: dict[str, str] = Field(
        default_factory=dict,
        description="values for the {{name}} placeholders some files carry (LLaMA-Factory's identity.json), e.g. "
        "{name: TinyLM, author: you}; a placeholder without one is trained as written, and counted",
    )
    files: dict[str, ChatFileConfig] = Field(
        default_factory=dict, description="per input file (by file name): its layout and field names, where auto fails"
    )
    dpo_turns: Literal["last", "all"] = Field(
        "last",
        description="dpo: last = a pair shares every turn but its final reply, which alone is scored (TRL's way); "
        "all = every assistant turn of each whole conversation is scored (MiniMind's way)",
    )
    max_skipped_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="a file with a larger share of its records skipped fails the stage, naming its main reason",
    )
    max_seq_len: int = Field(512, ge=8, description="tokens kept per conversation; longer ones are cut and counted")
    batch_records: int = Field(256, ge=1, description="conversations per encode_batch call")
    simplify: bool = Field(
        True,
        description="convert traditional Chinese in every message to simplified, as the corpus stage does (counted)",
    )
    convert: ConvertConfig = Field(default_factory=ConvertConfig, description="the converter that simplify uses")
    source_weights: dict[str, NonNegativeFloat] = Field(
        default_factory=dict,
        description="copies of each input file (by file name) in the one shuffled training stream: 2 = twice, 0.5 = a "
        "seeded half; files not named count once",
    )
    validation_fraction: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="share of records, chosen by a hash of file name, line and seed, held out for validation loss",
    )
    shard_units: int = Field(
        16384, ge=1, description="conversations (or pairs) per training shard: a checkpoint and a validation after each"
    )
    seed: int = Field(0, ge=0, description="fixes the validation split, the fractional copies and the shuffle")


class LoraConfig(_Settings):
    """Low-rank adapters (PEFT's LoRA) on the model's linear layers: only they train, and only they are checkpointed."""

    rank: int = Field(8, ge=1, description="rank of each adapter's update")
    alpha: float = Field(16.0, gt=0, description="the update is scaled by alpha / rank")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapters' input")
    target_modules: list[str] = Field(
        ["wqkv", "wo", "w13", "w2"],
        min_length=1,
        description="linear layers that get adapters: wqkv and wo (attention), w13 and w2 (feed-forward)",
    )


LearningRate = Annotated[float, Field(gt=0, description="peak learning rate, reached after warmup_steps")]
MinLearningRate = Annotated[float, Field(ge=0, description="where the cosine decay ends, at the last step")]
WarmupSteps = Annotated[int, Field(ge=0, description="optimizer steps of linear warmup from zero")]
SamplePrompts = Annotated[list[str], Field(description="prompts sampled after each shard, logged as a text artifact")]
Device = Annotated[Literal["auto", "cpu", "cuda"], Field(description="auto: CUDA when torch sees a GPU, else the CPU")]
Experiment = Annotated[str, Field(description="the MLflow experiment the runs go to")]


class TrainConfig(_Settings):
    """Online pretraining, shard by shard, with a checkpoint in MLflow after each."""

    model: ModelConfig = Field(
        default_factory=ModelConfig, description="the model's shape (a run started from init_run_id takes that run's)"
    )
    seq_len: int = Field(256, ge=8, description="tokens per training window; at most the model's max_seq_len")
    batch_size: int = Field(16, ge=1, description="windows (or conversations) per micro-batch")
    learning_rate: LearningRate = 1e-3
    min_learning_rate: MinLearningRate = 1e-4
    warmup_steps: WarmupSteps = 50
    weight_decay: float = Field(0.1, ge=0, description="AdamW's decoupled weight decay (not on norms and biases)")
    grad_clip: float = Field(1.0, gt=0, description="gradients are scaled down to this global norm at most")
    seed: int = Field(1337, ge=0, description="fixes the initial weights, the data order and dropout")
    max_shards: int | None = Field(None, ge=1, description="train on at most this many shards (None = all)")
    epochs: int = Field(
        1,
        ge=1,
        description="passes over the data (its shards, max_shards of them), each in its own shuffled order: small "
        "SFT, LoRA and DPO sets are trained for several",
    )
    max_steps_per_shard: int | None = Field(
        None, ge=1, description="cap steps per shard, for quick runs (None = the whole shard)"
    )
    grad_accum_steps: int = Field(1, ge=1, description="micro-batches summed into each optimizer step")
    log_every: int = Field(10, ge=1, description="log metrics to MLflow every N steps")
    checkpoint_every: int | None = Field(
        None, ge=1, description="also checkpoint every N steps inside a shard (None = after each shard only)"
    )
    eval_batches: int = Field(8, ge=0, description="validation batches after each shard (0 = no validation)")
    sample_prompts: SamplePrompts = ["The", "我们"]
    sample_tokens: int = Field(32, ge=0, description="tokens generated per sample prompt")
    compile: bool = Field(False, description="torch.compile the model (worth it on GPU for long runs)")
    processes: int = Field(
        1,
        ge=1,
        description="data-parallel processes the flow launches with torchrun (one per GPU); 1 = in the flow's process",
    )
    nodes: int = Field(
        1, ge=1, description="machines training together, each launching `processes` processes; >1 needs rendezvous"
    )
    node_rank: int = Field(
        0, ge=0, description="this machine among the nodes, 0 to nodes-1 (set per machine); node 0 hosts the rendezvous"
    )
    rendezvous: str | None = Field(
        None,
        description="host:port of node 0 that every node reaches, for torchrun's c10d rendezvous (nodes > 1)",
    )
    peak_tflops: float = Field(989.0, gt=0, description="the GPU's dense bf16 peak, for MFU (H100 SXM: 989)")
    device: Device = "auto"
    experiment: Experiment = "tinylm"
    run_name: str | None = Field(None, description="the MLflow run's name (None: the stage's, as train)")
    resume_run_id: str | None = Field(
        None,
        description="continue this MLflow run from its newest checkpoint (an interrupted run of the same training is "
        "continued anyway)",
    )
    restart: bool = Field(
        False,
        description="start afresh even if an interrupted run with this data and config exists (that run is marked "
        "KILLED)",
    )
    verify_shards: bool = Field(
        True, description="check every token shard's sha256 against the manifest before training (one read of the data)"
    )
    init_run_id: str | None = Field(
        None,
        description="start a new run from another model's weights (its shape too): a run id (its newest checkpoint), "
        "a checkpoint directory or step, an exported folder, or models:/NAME/VERSION; SFT after pretraining",
    )
    lora: LoraConfig | None = Field(
        None, description="train low-rank adapters on init_run_id's weights instead of every weight"
    )
    think_token_weight: float = Field(
        1.0,
        ge=0,
        description="chat data: loss weight of the think and /think tags where trained (MiniMind's reasoning stage "
        "weighs them up)",
    )

    @model_validator(mode="after")
    def _schedule_in_order(self) -> TrainConfig:
        """The cosine decays from learning_rate to min_learning_rate: the other way round it would rise."""
        if self.min_learning_rate > self.learning_rate:
            raise ValueError(
                f"min_learning_rate {self.min_learning_rate} is above learning_rate {self.learning_rate}: lower it"
            )
        return self

    @model_validator(mode="after")
    def _nodes_can_meet(self) -> TrainConfig:
        """Nodes find each other at the rendezvous, and each has its own place among them."""
        if self.nodes > 1 and self.rendezvous is None:
            raise ValueError(f"nodes {self.nodes} need a rendezvous: set it to node 0's host:port (e.g. node0:29400)")
        if self.rendezvous is not None and not re.fullmatch(r"[^:\s]+:\d+", self.rendezvous):
            raise ValueError(f"rendezvous {self.rendezvous!r} is not host:port: give node 0's name and a port")
        if self.node_rank >= self.nodes:
            raise ValueError(f"node_rank {self.node_rank} is not below nodes {self.nodes}: number the nodes from 0")
        return self


class EvalConfig(_Settings):
    """What `tinylm eval` measures: perplexity on held-out text, and benchmarks through lm-evaluation-harness."""

    perplexity_data: list[str] = Field(
        default_factory=list,
        description="corpus directories (scored per source and language), shard directories (their validation split) "
        "or raw files any corpus reader takes; the pipeline scores its own shards first, then these",
    )
    max_tokens: int = Field(
        200_000, ge=1, description="tokens scored per group at most (groups: source/language, or a shard set)"
    )
    seq_len: int | None = Field(None, ge=8, description="tokens per scored window (None = the model's max_seq_len)")
    batch_size: int = Field(8, ge=1, description="windows (perplexity) or requests (benchmarks) per forward pass")
    benchmarks: list[str] = Field(
        default_factory=list,
        description="folders of C-Eval/CMMLU-style multiple choice (csv or jsonl: question, A-D, answer; dev/ for "
        "few-shot), or lm-evaluation-harness task names (these download their data)",
    )
    num_fewshot: int = Field(0, ge=0, description="worked examples before each question, from the task's dev split")
    limit: int | None = Field(None, ge=1, description="score at most this many items per benchmark task (None = all)")
    answer_prompt: str = Field(
        "答案：", description="what follows the choices in a local task's prompt (C-Eval and CMMLU use 答案：)"
    )
    prompt: Literal["answer_only", "chain_of_thought"] = Field(
        "answer_only",
        description="local benchmarks: answer_only scores each choice letter after the question; chain_of_thought "
        "is C-Eval's own: the model reasons after 让我们一步一步思考 (its few-shot examples show the dev files' "
        "explanation column) and the letter it concludes with is scored",
    )
    max_new_tokens: int = Field(256, ge=1, description="chain_of_thought: tokens the model may reason for")
    apply_chat_template: bool = Field(
        False,
        description="ask inside the model's chat template (lm-evaluation-harness's apply_chat_template, few-shot "
        "examples as turns): how an SFT'd model is meant to be asked; recorded in the eval run",
    )
    system_prompt: str | None = Field(
        None, description="a system message before the questions (with apply_chat_template, its system turn)"
    )
    simplify: bool = Field(
        True,
        description="convert traditional Chinese in raw files to simplified before scoring, as the corpus stage does "
        "(the tokenizer learned simplified text); corpora and shards are scored as they are",
    )
    convert: ConvertConfig = Field(default_factory=ConvertConfig, description="the converter that simplify uses")
    device: Device = "auto"
    experiment: Experiment = "tinylm"


class PipelineConfig(_Settings):
    """Everything from raw files to a trained model, under one workspace."""

    workspace: str = Field(WORKSPACE_DEFAULT, description=WORKSPACE_DESCRIPTION)
    name: str = Field("default", description="names this corpus, tokenizer and shard set in the workspace")
    dedup_index: str | None = Field(
        "dedup-index",
        description="persistent dedup index, relative to the workspace; None = deduplicate this corpus alone",
    )
    inputs: list[str] = Field(
        default_factory=list,
        description="raw corpus files or directories: Wikipedia .xml(.bz2), WuDao .json, jsonl, txt, parquet; "
        "relative paths are taken from the directory the command or the serving process started in",
    )
    mirror: str | None = Field(
        None,
        description="fsspec URL (s3://bucket/workspace) that keeps a copy of every finished stage; a new machine pulls "
        "from it",
    )
    corpus: CorpusConfig = Field(CorpusConfig(), description="extraction, conversion, filters and dedup")
    tokenizer: TokenizerConfig = Field(TokenizerConfig(), description="byte-level BPE training")
    shards: ShardsConfig = Field(ShardsConfig(), description="token shards and the validation split")
    train: TrainConfig = Field(TrainConfig(), description="the model, the optimizer and the schedule")
    eval: EvalConfig | None = Field(
        None, description="evaluate the trained model after training (None = no eval stage)"
    )
    decontaminate_with_eval: bool = Field(
        True,
        description="drop corpus documents that contain a question of the eval section's local benchmark folders "
        "(added to corpus.filters.decontaminate)",
    )

    def corpus_config(self) -> CorpusConfig:
        """The corpus settings of this pipeline: the eval section's benchmark folders join the decontamination
        sets, so the benchmarks the run reports are ones its model never read."""
        if self.eval is None or not self.decontaminate_with_eval:
            return self.corpus
        filters = self.corpus.filters
        folders = [entry for entry in self.eval.benchmarks if Path(entry).is_dir()]
        sets = list(dict.fromkeys([*filters.decontaminate, *folders]))
        return self.corpus.model_copy(update={"filters": filters.model_copy(update={"decontaminate": sets})})

    def stage_dir(self, stage: Literal["corpus", "tokenizers", "shards"]) -> Path:
        return stage_dir(self.workspace, stage, self.name)

    def index_dir(self) -> str | None:
        return str(Path(self.workspace) / self.dedup_index) if self.dedup_index else None

    def mirror_of(self, directory: str) -> str | None:
        """Where the mirror keeps a workspace directory, or None without a mirror."""
        if self.mirror is None:
            return None
        return f"{self.mirror.rstrip('/')}/{Path(directory).relative_to(self.workspace).as_posix()}"


class RefreshConfig(_Settings):
    """A refresh: corpus files new to the inbox go through corpus, dedup and shards, and training continues on them.

    Its defaults find what the pipeline built in the same workspace: the inbox is `<workspace>/inbox`, training
    continues the workspace's newest finished training run, and the tokenizer is the one that run was trained with.
    So a scheduled run needs no parameters beyond the workspace.
    """

    workspace: str = Field(WORKSPACE_DEFAULT, description=WORKSPACE_DESCRIPTION)
    inbox: str = Field(
        "inbox",
        description="folder scanned for new corpus files, relative to the workspace, or an fsspec URL "
        "(s3://bucket/inbox, ...)",
    )
    tokenizer: str | None = Field(
        None,
        description="tokenizer directory (relative to the workspace); None = the one the run training continues from "
        "was trained with",
    )
    base_run_id: str | None = Field(
        None,
        description="training run the first refresh continues (None: the workspace's newest finished training run)",
    )
    dedup_index: str | None = Field("dedup-index", description="persistent dedup index, relative to the workspace")
    lock_timeout_s: float = Field(
        3600, gt=0, description="how long a refresh waits for another one on the same workspace"
    )
    corpus: CorpusConfig = Field(
        CorpusConfig(), description="extraction, conversion, filters and dedup of the new files"
    )
    shards: ShardsConfig = Field(ShardsConfig(), description="token shards of the new files")
    train: TrainConfig = Field(
        TrainConfig(), description="how training continues (the model's shape is the continued run's)"
    )

    def inbox_url(self) -> str:
        return self.inbox if "://" in self.inbox else str(Path(self.workspace) / self.inbox)

    def tokenizer_dir(self) -> str | None:
        return None if self.tokenizer is None else str(Path(self.workspace) / self.tokenizer)


def read_yaml_settings(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}


def load_yaml(path: str | Path, model: type[BaseModel]) -> BaseModel:
    """Read a YAML file into a config model; unknown keys are an error, not silently ignored."""
    return model.model_validate(read_yaml_settings(path))
