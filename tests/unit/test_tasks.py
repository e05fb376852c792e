"""The tasks: the operator's table and the trainer's modules agree, every example's config
parses on the trainer side, and each task's data preparation does what it promises."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from datasets import Dataset, DatasetDict

from ftjob import render
from ftjob.api import load_job
from ftjob.api.tasks import TASKS as SPEC_TASKS
from ftjob_trainer.arguments import DataArguments, load_config
from ftjob_trainer.errors import DataError
from ftjob_trainer.tasks import TASKS as TRAINER_TASKS
from ftjob_trainer.tasks import causal_lm, masked_lm, token_classification
from ftjob_trainer.tasks.base import group_texts, hold_out_validation, sample_length, \
    token_accuracy
from tests.unit.test_render import EXAMPLES, PLACEMENT


def test_the_operator_and_the_trainer_know_the_same_tasks():
    assert list(SPEC_TASKS) == list(TRAINER_TASKS)


@pytest.mark.parametrize("task", list(SPEC_TASKS))
def test_each_task_setting_has_the_same_name_and_default_on_both_sides(task):
    spec_model = SPEC_TASKS[task].settings
    trainer_fields = {f.name: f.default for f in dataclasses.fields(TRAINER_TASKS[task].Arguments)}
    spec_fields = {name: info.default for name, info in spec_model.model_fields.items()} \
        if spec_model else {}
    assert spec_fields == trainer_fields


@pytest.mark.parametrize("example", ["quickstart", "masked-lm", "token-classification",
                                     "causal-lm", "sft-chat", "dpo"])
def test_each_examples_trainer_config_parses_with_its_tasks_arguments(example, tmp_path):
    job = load_job(EXAMPLES / f"{example}.yaml")
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(render.trainer_config(job, PLACEMENT)))
    config = load_config(config_file)
    assert config.model.task == job.spec.model.task
    assert type(config.task) is TRAINER_TASKS[job.spec.model.task].Arguments
    settings = job.spec.task_settings()
    if settings is not None:
        assert dataclasses.asdict(config.task) == settings.model_dump()


def test_group_texts_cuts_exact_blocks_and_loses_only_the_tail():
    lengths = [5, 1, 9, 3, 7, 2]
    texts = [[100 * i + j for j in range(n)] for i, n in enumerate(lengths)]
    joined = [token for text in texts for token in text]
    blocks = group_texts({"input_ids": texts, "attention_mask": [[1] * n for n in lengths]},
                         block_size=4)
    assert all(len(block) == 4 for block in blocks["input_ids"])
    assert len(blocks["input_ids"]) == sum(lengths) // 4
    # In order, nothing duplicated, nothing lost but the last partial block.
    assert [t for block in blocks["input_ids"] for t in block] == joined[:len(joined) // 4 * 4]
    assert blocks["attention_mask"] == [[1] * 4] * len(blocks["input_ids"])


def test_hold_out_validation_takes_the_first_rows_and_keeps_the_rest_for_training():
    raw = DatasetDict({"train": Dataset.from_dict({"text": [str(i) for i in range(20)]})})
    split = hold_out_validation(raw, DataArguments(validation_split_percentage=10))
    assert split["eval"]["text"] == ["0", "1"]
    assert split["train"]["text"] == [str(i) for i in range(2, 20)]
    given = DatasetDict({**raw, "eval": raw["train"].select([0])})
    assert hold_out_validation(given, DataArguments(validation_split_percentage=10)) is given
    with pytest.raises(DataError, match="validationSplitPercentage"):
        hold_out_validation(DatasetDict({"train": raw["train"].select([0])}),
                            DataArguments(validation_split_percentage=10))


def test_the_sample_length_comes_from_the_field_that_sets_it_and_fits_the_model():
    class ModelConfig:
        max_position_embeddings = 512

    data = DataArguments(max_length=128)
    assert sample_length(None, data, True, "causalLm", ModelConfig()) == 128
    assert sample_length(512, data, True, "causalLm", ModelConfig()) == 512
    assert sample_length(512, data, False, "causalLm", ModelConfig()) == 128  # truncated
    with pytest.raises(DataError, match=r"spec.causalLm.blockSize is 1024 .* at most 512"):
        sample_length(1024, data, True, "causalLm", ModelConfig())
    with pytest.raises(DataError, match=r"spec.dataset.maxLength is 1024 .* at most 512"):
        sample_length(None, DataArguments(max_length=1024), True, "maskedLm", ModelConfig())


def test_sub_word_labels_go_on_the_first_piece_of_each_word(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    words = ["Kubernetes", "met", "yesterday"]
    names = ["O", "B-ORG", "I-ORG", "B-DATE", "I-DATE"]
    tags = [1, 0, 3]
    encoded = tokenizer(words, is_split_into_words=True)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert pieces == ["[CLS]", "ku", "##ber", "##net", "##es", "met", "yesterday", "[SEP]"]
    inside = token_classification.inside_tag(names)
    assert token_classification.align_labels(encoded.word_ids(), tags, False, inside) == \
        [-100, 1, -100, -100, -100, 0, 3, -100]
    # label_all_tokens: the later pieces of a B- word carry its I- tag.
    assert token_classification.align_labels(encoded.word_ids(), tags, True, inside) == \
        [-100, 1, 2, 2, 2, 0, 3, -100]


@pytest.mark.parametrize("truth,predicted,expected", [
    ([["B-ORG", "I-ORG", "O", "B-DATE"]], [["B-ORG", "I-ORG", "O", "B-DATE"]],
     {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 1.0}),
    # A span cut short is a miss, not half a hit; the date is found.
    ([["B-ORG", "I-ORG", "O", "B-DATE"]], [["B-ORG", "O", "O", "B-DATE"]],
     {"precision": 0.5, "recall": 0.5, "f1": 0.5, "accuracy": 0.75}),
    # The right span with the wrong type is a miss; an extra entity lowers precision.
    ([["B-ORG", "O", "O"]], [["B-DATE", "O", "B-ORG"]],
     {"precision": 0.0, "recall": 0.0, "f1": 0.0, "accuracy": 1 / 3}),
    # I- after O opens an entity (conlleval's lenient reading).
    ([["O", "I-ORG", "I-ORG"]], [["O", "B-ORG", "I-ORG"]],
     {"precision": 1.0, "recall": 1.0, "f1": 1.0, "accuracy": 2 / 3}),
])
def test_entity_scores_count_whole_spans(truth, predicted, expected):
    assert token_classification.entity_scores(truth, predicted) == pytest.approx(expected)


def test_a_tag_outside_the_label_list_names_the_column_and_the_field():
    raw = DatasetDict({"train": Dataset.from_dict({"tags": [["O", "B-ORG"]]}),
                       "eval": Dataset.from_dict({"tags": [["O", "B-PER"]]})})
    names = token_classification.tag_names(raw, "tags", None)
    assert names == ["B-ORG", "O"]
    with pytest.raises(DataError) as caught:
        token_classification.tag_ids(raw, "tags", names)
    assert "'B-PER'" in str(caught.value) and "eval" in str(caught.value)
    assert "spec.tokenClassification.labels" in str(caught.value)
    ids = token_classification.tag_ids(raw, "tags", ["O", "B-ORG", "B-PER"])
    assert ids["eval"]["tags"] == [[0, 2]]


def test_packed_causal_lm_text_ends_each_document_with_end_of_text(tiny_decoders):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_decoders["llama"])
    batch = {"text": ["The council met.", "The bank grew."]}
    tokenize = causal_lm.document_tokenizer(tokenizer, ["text"])
    encoded = tokenize(batch)
    for ids, text in zip(encoded["input_ids"], batch["text"]):
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:-1]) == text
    assert [len(m) for m in encoded["attention_mask"]] == \
        [len(ids) for ids in encoded["input_ids"]]


def test_masked_lm_keeps_special_tokens_out_of_the_masking(minilm_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    encoded = masked_lm.text_tokenizer(tokenizer, "text", None)({"text": ["a b", "c"]})
    assert encoded["special_tokens_mask"][0] == [1, 0, 0, 1]


def test_token_accuracy_scores_labelled_tokens_and_shifts_for_a_causal_lm():
    import numpy as np
    import torch

    logits = torch.tensor([[[0.0, 9.0, 0.0], [0.0, 0.0, 9.0], [9.0, 0.0, 0.0]]])
    parts = token_accuracy(["perplexity", "accuracy"], shifted=False)
    predicted = parts["preprocess_logits_for_metrics"](logits, None)
    assert predicted.tolist() == [[1, 2, 0]]
    labels = np.array([[1, -100, 2]])  # one right, one ignored, one wrong
    assert parts["compute_metrics"]((predicted.numpy(), labels)) == {"accuracy": 0.5}
    # A causal LM predicts the next token: prediction i is scored against label i + 1.
    shifted = token_accuracy(["accuracy"], shifted=True)["compute_metrics"]
    assert shifted((np.array([[2, 0, 7]]), np.array([[5, 2, 0]]))) == {"accuracy": 1.0}
    assert token_accuracy(["perplexity"], shifted=False) == {}


@pytest.mark.parametrize("turns,problem", [
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], None),
    ([{"role": "user", "content": "a"}], "has no assistant turn to learn from"),
    ([{"role": "human", "content": "a"}], "role 'human'"),
    ([{"role": "user"}], "without role and content"),
    ("hello", "is not a list of turns"),
    ([], "is not a list of turns"),
])
def test_a_conversation_needs_roles_contents_and_an_assistant_turn(turns, problem):
    from ftjob_trainer.tasks.sft import conversation_problem

    found = conversation_problem(turns)
    assert found == problem if problem is None else problem in found


def rendered_config(tmp_path, example: str, model: str, lora: bool = True):
    job = load_job(EXAMPLES / example)
    job.spec.model.name = model
    if not lora:
        job.spec.peft = None
    config_file = tmp_path / "config.json"
    rendered = render.trainer_config(job, render.Placement(
        work_dir=str(tmp_path), checkpoint_uri=f"file://{tmp_path}/ckpt", output_uri=None,
        events_file=None, attempt=1))
    config_file.write_text(json.dumps(rendered))
    return load_config(config_file)


def sft_trainer(config, model: str, raw: DatasetDict):
    """The SFTTrainer train() would build from the sft task's parts, and its tokenizer."""
    from transformers import AutoTokenizer

    from ftjob_trainer.tasks import sft

    tokenizer = AutoTokenizer.from_pretrained(model)
    parts = sft.build(config, model, tokenizer, raw)
    return parts.trainer_class(model=parts.load_model(), args=parts.training_args,
                               train_dataset=parts.train_dataset,
                               eval_dataset=parts.train_dataset,  # the example evaluates
                               processing_class=tokenizer), tokenizer


def test_sft_packing_joins_conversations_into_fewer_samples(tiny_decoders, tmp_path):
    conversations = [[{"role": "user", "content": f"Sentence {i}."},
                      {"role": "assistant", "content": f"Rewrite {i}."}] for i in range(8)]
    raw = DatasetDict({"train": Dataset.from_list([{"messages": c} for c in conversations])})
    config = rendered_config(tmp_path, "sft-chat.yaml", tiny_decoders["qwen2"])
    unpacked, _ = sft_trainer(config, tiny_decoders["qwen2"], raw)
    config.task.packing = True
    packed, _ = sft_trainer(config, tiny_decoders["qwen2"], raw)
    assert len(unpacked.train_dataset) == 8
    assert len(packed.train_dataset) < 8
    assert sum(len(row["input_ids"]) for row in packed.train_dataset) == \
        sum(len(row["input_ids"]) for row in unpacked.train_dataset)


def test_sft_labels_are_ignored_exactly_outside_the_assistant_turns(tiny_decoders, tmp_path):
    config = rendered_config(tmp_path, "sft-chat.yaml", tiny_decoders["qwen2"])
    conversation = [{"role": "system", "content": "Rewrite it."},
                    {"role": "user", "content": "The bank grew the loan program."},
                    {"role": "assistant", "content": "The lender expanded the loans."},
                    {"role": "user", "content": "Again."},
                    {"role": "assistant", "content": "The bank broadened the program."}]
    raw = DatasetDict({"train": Dataset.from_list([{"messages": conversation}])})
    trainer, tokenizer = sft_trainer(config, tiny_decoders["qwen2"], raw)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(conversation, tokenize=False)
    learned = [token for token, label in zip(ids, labels) if label != -100]
    assert [label for label in labels if label != -100] == learned
    # Exactly the assistant's words and their end-of-turn tokens, nothing of the rest.
    assert tokenizer.decode(learned) == ("The lender expanded the loans.<|im_end|>"
                                         "The bank broadened the program.<|im_end|>")


def test_the_sft_settings_ftjob_passes_on_are_fields_of_the_installed_sftconfig():
    from trl import SFTConfig

    fields = {f.name for f in dataclasses.fields(SFTConfig)}
    assert {"completion_only_loss", "assistant_only_loss", "packing", "max_length",
            "dataset_text_field"} <= fields


USER = [{"role": "user", "content": "Rewrite: the bank grew."}]
SAID = [{"role": "assistant", "content": "The lender expanded."}]


@pytest.mark.parametrize("prompt,chosen,rejected,problem", [
    ("Rewrite:", " Yes.", " No.", None),
    (USER, SAID, [{"role": "assistant", "content": "No."}], None),
    ("Rewrite:", "", " No.", "has an empty chosen"),
    (USER, SAID, " No.", "has a rejected that is not a list of turns"),
    (USER, USER, SAID, "has a chosen answer with turns that are not the assistant's"),
    ([{"role": "robot", "content": "x"}], SAID, SAID, "role 'robot'"),
])
def test_a_preference_pair_is_three_texts_or_three_conversations(prompt, chosen, rejected,
                                                                  problem):
    from ftjob_trainer.tasks.dpo import preference_problem

    found = preference_problem(prompt, chosen, rejected)
    assert found == problem if problem is None else problem in found


def dpo_trainer(tmp_path, model: str, lora: bool):
    """The DPOTrainer train() would build from the dpo task's parts."""
    from transformers import AutoTokenizer

    from ftjob_trainer.tasks import dpo

    config = rendered_config(tmp_path, "dpo.yaml", model, lora)
    config.training_given.update(learning_rate=0.05, max_steps=3, report_to="none",
                                 eval_strategy="no")
    rows = [{"prompt": USER, "chosen": SAID,
             "rejected": [{"role": "assistant", "content": f"Unrelated {i}."}]}
            for i in range(8)]
    raw = DatasetDict({"train": Dataset.from_list(rows)})
    tokenizer = AutoTokenizer.from_pretrained(model)
    parts = dpo.build(config, model, tokenizer, raw)
    return parts.trainer_class(model=parts.load_model(), args=parts.training_args,
                               train_dataset=parts.train_dataset, processing_class=tokenizer,
                               **parts.optional_trainer_arguments())


def test_dpo_with_lora_holds_one_model_whose_reference_is_the_base(tiny_decoders, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    trainer = dpo_trainer(tmp_path, tiny_decoders["qwen2"], lora=True)
    assert trainer.ref_model is None  # no second model
    assert list(trainer.model.peft_config) == ["default"]  # nor a copy of the adapter
    trainer.train()
    base = AutoModelForCausalLM.from_pretrained(tiny_decoders["qwen2"])
    ids = torch.tensor([[5, 6, 7, 8]])
    # Without the autocast wrapper of TRL's default bf16, to compare like with like.
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False).eval()
    with torch.no_grad(), model.disable_adapter():
        reference = model(input_ids=ids).logits
    with torch.no_grad():
        policy = model(input_ids=ids).logits
        torch.testing.assert_close(reference, base(input_ids=ids).logits)
        assert not torch.allclose(policy, reference)  # training moved the adapter


def test_dpo_without_lora_keeps_a_frozen_reference_copy(tiny_decoders, tmp_path):
    trainer = dpo_trainer(tmp_path, tiny_decoders["qwen2"], lora=False)
    assert trainer.ref_model is not None and trainer.ref_model is not trainer.model


def test_the_dpo_settings_ftjob_passes_on_are_those_of_the_installed_dpoconfig():
    from trl import DPOConfig

    from ftjob.api.tasks import DPO_LOSS_TYPES, DpoSpec

    fields = {f.name: f for f in dataclasses.fields(DPOConfig)}
    for name in ("beta", "loss_type", "label_smoothing", "max_length"):
        assert name in fields
    for name in ("beta", "label_smoothing"):
        assert DpoSpec.model_fields[name].default == fields[name].default
    assert fields["loss_type"].default_factory() == [DpoSpec.model_fields["loss_type"].default]
    # TRL lists its losses in the field's help: each one ftjob offers is still there.
    listed = set(re.findall(r"`'(\w+)'`", fields["loss_type"].metadata["help"]))
    assert set(DPO_LOSS_TYPES) == listed
