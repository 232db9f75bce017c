"""One converter per public format, from one record to TRL's preference records (FORMATS), the fields each one reads
(FIELDS), and detect_format.

Formats, detected from the fields of the first record (detect_format, by the rules of helpers/data_fields.py: the
one format that reads every field, or may leave it unread). All become TRL's conversational preference
format {"prompt": [messages], "chosen": [one assistant message], "rejected": [one assistant message]}, except the
two trl-standard formats, which stay standard text: their prompt may already be chat-templated text, and turning it
into messages would template it twice.
  homework            id, prompt, support, oppose (lang optional)     support preferred
  orca                system, question, chosen, rejected              Intel/orca_dpo_pairs
  stack-exchange      qid, question, response_j, response_k           lvwerra/stack-exchange-paired (j preferred)
  cvalues             prompt, pos_resp, neg_resp (pos_type, neg_type) CValues-Comparison (pos preferred)
  multi-turn          messages with chosen_value/rejected_value turns  the last assistant turn is the pair
  hh-rlhf             chosen, rejected as "\\n\\nHuman: …\\n\\nAssistant: …" transcripts (Anthropic/hh-rlhf)
  ranked              prompt, responses (best first)                  pairs "all" (i < j) or "adjacent"
  trl-standard        prompt, chosen, rejected (text)                 passed through, standard
  trl-standard-implicit       chosen, rejected (text)                 passed through, standard
  trl-conversational          prompt, chosen, rejected (messages)     passed through
  trl-conversational-implicit chosen, rejected (messages)             shared prefix split off as the prompt
  sharegpt            conversations, chosen, rejected (system)        LLaMA-Factory; MedicalGPT since 2026
  medicalgpt          question, response_chosen, response_rejected    MedicalGPT before 2026 (system, history)
SFT conversations (load_sft_file), as {"messages": [...]}:
  sft-messages        messages with role/content
  sft-llama2          text "<s>[INST] … [/INST] … </s>" (mlabonne/guanaco-llama2-1k), <<SYS>> and several turns
The converters of hh-rlhf and trl-conversational-implicit are in helpers/data_transcripts.py, those of sharegpt and
medicalgpt in helpers/data_history_formats.py. Multi-turn formats must alternate user and assistant turns: two turns
of one speaker in a row are refused with the row and field (see helpers/data_rows.py for why they are not merged).
A field a format neither reads nor may leave unread (ids, scores, metadata) is refused with the row and the field.
"""

from __future__ import annotations

import itertools
import numbers
import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any

from helpers.data_fields import Fields, detect, refuse_unread
from helpers.data_history_formats import _medicalgpt_rows, _sharegpt_rows
from helpers.data_rows import (ROLES, Located, Where, _as_text, _check_conversation, _check_pair, _distinct, _kind,
                               _messages, _msg, _prompt, _row_name, _system, _text, check_turns)
from helpers.data_skipped import Skipped
from helpers.data_transcripts import _hh_rlhf_rows, _trl_conversational_implicit_rows
from helpers.errors import DataError, UserError
from helpers.homework_data import HOMEWORK_FIELDS, _check_homework_row, _check_id

# ---------------------------------------------------------------- one record of each public format


def _homework_rows(record: dict) -> list[dict]:
    """homework: support preferred (support_ratio is make_preference_pairs' business)."""
    _check_id(record)
    _distinct(record, "support", "oppose")
    return [{"prompt": _prompt(_text(record, "prompt")), "chosen": [_msg("assistant", record["support"])],
             "rejected": [_msg("assistant", record["oppose"])], "id": record["id"], "preferred": "support"}]


def _orca_rows(record: dict) -> list[dict]:
    """orca: a system message only when `system` is non-empty."""
    system = _system(record)
    _distinct(record, "chosen", "rejected")
    return [{"prompt": _prompt(_text(record, "question"), system),
             "chosen": [_msg("assistant", record["chosen"])], "rejected": [_msg("assistant", record["rejected"])]}]


def _stack_exchange_rows(record: dict) -> list[dict]:
    """stack-exchange: response_j is preferred over response_k."""
    _distinct(record, "response_j", "response_k")
    prompt = "Question: " + _text(record, "question") + "\n\nAnswer: "
    return [{"prompt": [_msg("user", prompt)], "chosen": [_msg("assistant", record["response_j"])],
             "rejected": [_msg("assistant", record["response_k"])]}]


def _cvalues_rows(record: dict) -> list[dict]:
    """cvalues: pos_resp is preferred over neg_resp."""
    _distinct(record, "pos_resp", "neg_resp")
    return [{"prompt": [_msg("user", _text(record, "prompt"))], "chosen": [_msg("assistant", record["pos_resp"])],
             "rejected": [_msg("assistant", record["neg_resp"])]}]


def _score(turn: dict, field: str, name: str) -> float | None:
    """An optional numeric score of a multi-turn assistant turn."""
    value = turn.get(field)
    if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
        raise DataError(f"is {_kind(value)}; expected a number", field=f"{name}.{field}")
    return value


def _multi_turn_rows(record: dict) -> list[dict]:
    """multi-turn: the last assistant turn is the pair (swapped when chosen_score < rejected_score); earlier
    assistant turns enter the prompt with their chosen_value (or value). The turns must alternate."""
    turns = record.get("messages")
    if not isinstance(turns, list) or len(turns) < 2:
        found = f"has {len(turns)} turns" if isinstance(turns, list) else f"is {_kind(turns)}"
        raise DataError(f"{found}; expected a list of at least 2 turns", field="messages")
    history = []
    for index, turn in enumerate(turns):
        name = f"messages[{index}]"
        if not isinstance(turn, dict) or turn.get("role") not in ROLES:
            raise DataError(f"expected a turn with a role among {', '.join(ROLES)}", field=name)
        if index == len(turns) - 1:
            break
        key = "chosen_value" if turn["role"] == "assistant" and "chosen_value" in turn else "value"
        history.append(_msg(turn["role"], _text(turn, key, f"{name}.{key}")))
    last, name = turns[-1], f"messages[{len(turns) - 1}]"
    if last["role"] != "assistant":
        raise DataError("the last turn must be the assistant's, with chosen_value and rejected_value", field=name)
    chosen = _text(last, "chosen_value", f"{name}.chosen_value")
    rejected = _text(last, "rejected_value", f"{name}.rejected_value")
    check_turns(history + [_msg("assistant", chosen)], "messages", "conversation")
    chosen_score, rejected_score = _score(last, "chosen_score", name), _score(last, "rejected_score", name)
    if chosen_score is not None and rejected_score is not None and chosen_score < rejected_score:
        chosen, rejected = rejected, chosen
    return [{"prompt": history, "chosen": [_msg("assistant", chosen)], "rejected": [_msg("assistant", rejected)]}]


def _ranked_rows(record: dict, pairs: str = "all") -> list[dict]:
    """ranked: responses best first; every (better, worse) pair, or only neighbours."""
    if pairs not in ("all", "adjacent"):
        raise UserError(f"pairs must be 'all' or 'adjacent', not {pairs!r}")
    prompt = [_msg("user", _text(record, "prompt"))]
    responses = record.get("responses")
    if not isinstance(responses, list) or len(responses) < 2:
        found = f"has {len(responses)} responses" if isinstance(responses, list) else f"is {_kind(responses)}"
        raise DataError(f"{found}; expected a list of at least 2, best first", field="responses")
    texts = [_as_text(value, f"responses[{i}]") for i, value in enumerate(responses)]
    for j, text in enumerate(texts):
        if text.strip() in [earlier.strip() for earlier in texts[:j]]:
            raise DataError("repeats an earlier response; the pair would teach nothing", field=f"responses[{j}]")
    n = len(texts)
    indices = itertools.combinations(range(n), 2) if pairs == "all" else [(i, i + 1) for i in range(n - 1)]
    return [{"prompt": prompt, "chosen": [_msg("assistant", texts[i])], "rejected": [_msg("assistant", texts[j])]}
            for i, j in indices]


def _trl_rows(record: dict, explicit: bool) -> list[dict]:
    """trl-*: passed through as they are (only prompt/chosen/rejected kept); _check_pair validates them."""
    keys = ("prompt", "chosen", "rejected") if explicit else ("chosen", "rejected")
    for key in keys:
        if key not in record:
            raise DataError("is missing", field=key)
    return [{key: record[key] for key in keys}]


# ---------------------------------------------------------------- SFT conversations

_INST = re.compile(r"\[INST\](.*?)\[/INST\](.*?)(?=\[INST\]|\Z)", re.DOTALL)
_SYS = re.compile(r"\s*<<SYS>>(.*?)<</SYS>>", re.DOTALL)


def _sft_messages_rows(record: dict) -> list[dict]:
    """sft-messages: role/content messages with at least one assistant answer."""
    messages = _messages(record.get("messages"), "messages")
    if not any(message["role"] == "assistant" for message in messages):
        raise DataError("has no assistant message to learn from", field="messages")
    return [{"messages": messages}]


def _sft_llama2_rows(record: dict) -> list[dict]:
    """sft-llama2: "<s>[INST] <<SYS>>…<</SYS>> user [/INST] answer </s><s>[INST] …" → messages."""
    text = _text(record, "text")
    turns = list(_INST.finditer(text))
    starts_ok = bool(turns) and re.fullmatch(r"\s*(<s>)?\s*", text[:turns[0].start()])
    if not starts_ok or any(a.end() != b.start() for a, b in itertools.pairwise(turns)):
        raise DataError('does not parse as "<s>[INST] … [/INST] … </s>" turns', field="text")
    messages = []
    for number, turn in enumerate(turns, start=1):
        user, answer = turn.group(1), re.sub(r"(\s*</?s>)+\s*$", "", turn.group(2)).strip()
        system = _SYS.match(user) if number == 1 else None
        if system:
            messages.append(_msg("system", system.group(1).strip()))
            user = user[system.end():]
        if not user.strip() or not answer:
            raise DataError(f"turn {number} has an empty {'question' if not user.strip() else 'answer'}", field="text")
        messages += [_msg("user", user.strip()), _msg("assistant", answer)]
    return [{"messages": _messages(messages, "text")}]


FORMATS: dict[str, Callable[..., list[dict]]] = {  # format → its converter of one record
    "homework": _homework_rows,
    "orca": _orca_rows,
    "stack-exchange": _stack_exchange_rows,
    "cvalues": _cvalues_rows,
    "multi-turn": _multi_turn_rows,
    "hh-rlhf": _hh_rlhf_rows,
    "ranked": _ranked_rows,
    "trl-standard": partial(_trl_rows, explicit=True),
    "trl-standard-implicit": partial(_trl_rows, explicit=False),
    "trl-conversational": partial(_trl_rows, explicit=True),
    "trl-conversational-implicit": _trl_conversational_implicit_rows,
    "sharegpt": _sharegpt_rows,
    "medicalgpt": _medicalgpt_rows,
}
SFT_FORMATS: dict[str, Callable[[dict], list[dict]]] = {"sft-messages": _sft_messages_rows,
                                                       "sft-llama2": _sft_llama2_rows}
STANDARD_FORMATS = ("trl-standard", "trl-standard-implicit")  # kept as text: never templated twice
PASSED_THROUGH = (*STANDARD_FORMATS, "trl-conversational")  # records kept as given; the others build their messages


def _scored(record: dict) -> bool:
    """multi-turn rather than sft-messages: a turn with chosen_value."""
    turns = record["messages"] if isinstance(record["messages"], list) else []
    return any(isinstance(turn, dict) and "chosen_value" in turn for turn in turns)


def _hh(record: dict) -> bool:
    """hh-rlhf rather than trl-standard-implicit: chosen is a "Human: …" transcript."""
    return isinstance(record["chosen"], str) and record["chosen"].lstrip().startswith("Human:")


def _listed(record: dict) -> bool:
    """Conversational rather than standard: chosen is a list of messages."""
    return isinstance(record["chosen"], list)


_PAIR = ("chosen", "rejected")
FIELDS: dict[str, Fields] = {  # format → the fields it needs, reads when present, and may leave unread
    "homework": Fields(HOMEWORK_FIELDS, optional=("id", "lang"), ignorable=("topic",)),
    "orca": Fields(("question", *_PAIR), optional=("system",)),
    "stack-exchange": Fields(("question", "response_j", "response_k"), optional=("qid",),
                             ignorable=("date", "metadata")),
    "cvalues": Fields(("prompt", "pos_resp", "neg_resp"), ignorable=("pos_type", "neg_type")),
    "multi-turn": Fields(("messages",), fits=_scored),
    "hh-rlhf": Fields(_PAIR, fits=_hh),
    "ranked": Fields(("prompt", "responses")),
    "trl-standard": Fields(("prompt", *_PAIR), fits=lambda record: not _listed(record)),
    "trl-standard-implicit": Fields(_PAIR, fits=lambda record: not _listed(record) and not _hh(record)),
    "trl-conversational": Fields(("prompt", *_PAIR), ignorable=("preferred",), fits=_listed),  # homework's, converted
    "trl-conversational-implicit": Fields(_PAIR, fits=_listed),
    "sharegpt": Fields(("conversations", *_PAIR), optional=("system",)),
    "medicalgpt": Fields(("question", "response_chosen", "response_rejected"), optional=("system", "history")),
    "sft-messages": Fields(("messages",), fits=lambda record: not _scored(record)),
    "sft-llama2": Fields(("text",)),
}

# ---------------------------------------------------------------- converting rows, detecting formats


def convert_rows(located: Iterable[Located], name: str, file: Where = None, skipped: Skipped | None = None,
                 **options: Any) -> Iterator[dict]:
    """Each record converted by the format's converter and checked, in order. A bad row raises its DataError
    (named by file, row and field), or with skipped is recorded there and left out."""
    if name in SFT_FORMATS:
        row_fn, check = SFT_FORMATS[name], _check_conversation
    else:
        row_fn = partial(FORMATS[name], **options)
        check = partial(_check_pair, conversational=name not in STANDARD_FORMATS, built=name not in PASSED_THROUGH)
    fields = FIELDS[name]
    ids: dict[Any, str] | None = {} if name == "homework" else None  # homework ids are unique across rows
    for place, record in located:
        try:
            if isinstance(record, DataError):
                raise record
            if not isinstance(record, dict):
                raise DataError(f"is {_kind(record)}; expected an object")
            refuse_unread(record, name, fields)
            if ids is not None:
                _check_homework_row(record, place, ids, file, HOMEWORK_FIELDS)
            examples = [check(example) for example in row_fn(record)]
        except DataError as error:
            if error.file is None or error.row is None:  # name the file and the row
                error = DataError(error.problem, error.file or file, error.row or _row_name(record, place),
                                  error.field)
            if skipped is None:
                raise error from None
            skipped.add(place, error)
            continue
        yield from examples


def check_options(name: str, options: dict) -> None:
    """Refuse converter options the format does not take (only ranked takes pairs=)."""
    unknown = set(options) - ({"pairs"} if name == "ranked" else set())
    if unknown:
        raise UserError(f"format {name} takes no option {', '.join(sorted(unknown))} (only ranked takes pairs=)")


def detect_format(records: list[dict], file: Where = None) -> str:
    """The format of the first record: the one that reads all its fields (rules in helpers/data_fields.py)."""
    if not records:
        raise DataError("no rows", file)
    return detect(records[0], FIELDS, file)
