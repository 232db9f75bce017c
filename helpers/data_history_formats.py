"""Formats whose records carry the earlier turns beside the pair: LLaMA-Factory's sharegpt preference rows and
MedicalGPT's rows with a history. Both become TRL's conversational records, the earlier turns kept as the prompt's
messages.

  sharegpt    conversations [{"from": "system"|"human"|"gpt", "value"}, …, the human's last], chosen and rejected as
              {"from": "gpt", "value"} objects (LLaMA-Factory) or as text (MedicalGPT since 2026); system optional.
              Turns written as {"role", "content"} with user/assistant are read alike.
  medicalgpt  question, response_chosen, response_rejected; system (empty: none) and history optional, history a
              list of [question, answer] pairs, oldest first (MedicalGPT's DPO and reward files before 2026).
"""

from __future__ import annotations

from typing import Any

from helpers.data_rows import _as_text, _distinct, _kind, _msg, _system, _text, check_turns
from helpers.errors import DataError

# sharegpt's speakers (LLaMA-Factory's tags), and the roles of turns written the OpenAI way, as chat roles
SPEAKERS = {"human": "user", "gpt": "assistant", "system": "system", "user": "user", "assistant": "assistant"}


def _turn(turn: Any, name: str) -> dict:
    """One {"from", "value"} (or {"role", "content"}) turn as a chat message."""
    if not isinstance(turn, dict):
        raise DataError(f"is {_kind(turn)}; expected a turn object with from and value", field=name)
    who_key, text_key = ("role", "content") if "role" in turn and "from" not in turn else ("from", "value")
    if who_key not in turn:
        raise DataError("has no 'from'; expected human, gpt or system", field=name)
    who = turn[who_key]
    if not isinstance(who, str) or who not in SPEAKERS:
        shown = repr(who) if isinstance(who, str) else _kind(who)
        raise DataError(f"{who_key} {shown} is not one of human, gpt, system (or user, assistant); tool turns "
                        "(function_call, observation) are not supported", field=name)
    return _msg(SPEAKERS[who], _text(turn, text_key, f"{name}.{text_key}"))


def _answer(record: dict, field: str) -> dict:
    """chosen or rejected: text, or one {"from": "gpt", "value"} turn."""
    value = record.get(field)
    if isinstance(value, str) or field not in record:
        return _msg("assistant", _text(record, field))
    if not isinstance(value, dict):
        raise DataError(f"is {_kind(value)}; expected text or a {{\"from\": \"gpt\", \"value\"}} turn", field=field)
    message = _turn(value, field)
    if message["role"] != "assistant":
        raise DataError(f"is a {message['role']} turn; expected the assistant's (gpt) answer", field=field)
    return message


def _sharegpt_rows(record: dict) -> list[dict]:
    """sharegpt: the conversations are the prompt ([system], human, gpt, …, human), chosen and rejected the answers."""
    turns = record.get("conversations")
    if not isinstance(turns, list) or not turns:
        found = "is an empty list" if isinstance(turns, list) else f"is {_kind(turns)}"
        raise DataError(f"{found}; expected the turns before the answer, the human's last", field="conversations")
    prompt = [_turn(turn, f"conversations[{index}]") for index, turn in enumerate(turns)]
    check_turns(prompt, "conversations", "prompt")
    system = _system(record)
    if system is not None:
        if prompt[0]["role"] == "system":
            raise DataError("is given twice, as this field and as the first turn of conversations; keep one",
                            field="system")
        prompt.insert(0, _msg("system", system))
    chosen, rejected = _answer(record, "chosen"), _answer(record, "rejected")
    if chosen["content"].strip() == rejected["content"].strip():
        raise DataError("is identical to 'rejected'; the pair teaches nothing", field="chosen")
    return [{"prompt": prompt, "chosen": [chosen], "rejected": [rejected]}]


def _history(value: Any) -> list[dict]:
    """MedicalGPT's history, [[question, answer], …] oldest first, as user and assistant messages (null: none)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataError(f"is {_kind(value)}; expected a list of [question, answer] pairs", field="history")
    messages = []
    for index, pair in enumerate(value):
        name = f"history[{index}]"
        if not isinstance(pair, list) or len(pair) != 2:
            found = f"has {len(pair)} items" if isinstance(pair, list) else f"is {_kind(pair)}"
            raise DataError(f"{found}; expected a [question, answer] pair", field=name)
        messages += [_msg("user", _as_text(pair[0], f"{name}[0]")), _msg("assistant", _as_text(pair[1], f"{name}[1]"))]
    return messages


def _medicalgpt_rows(record: dict) -> list[dict]:
    """medicalgpt: [system], the history's turns, then the question; response_chosen preferred."""
    system = _system(record)
    _distinct(record, "response_chosen", "response_rejected")
    prompt = ([_msg("system", system)] if system else []) + _history(record.get("history"))
    prompt.append(_msg("user", _text(record, "question")))
    return [{"prompt": prompt, "chosen": [_msg("assistant", record["response_chosen"])],
             "rejected": [_msg("assistant", record["response_rejected"])]}]
