"""Pairs given as two whole conversations, hh-rlhf transcripts and TRL's implicit conversational records: the turns
both sides share are the prompt, and the one answer where they part is chosen or rejected.

An hh-rlhf transcript is "\\n\\nHuman: …\\n\\nAssistant: …": Human first, the speakers taking turns, no turn empty,
no speaker's mark glued into another's turn without its blank line, and the Assistant's answer last.
"""

from __future__ import annotations

import re

from helpers.data_rows import _messages, _text, check_turns
from helpers.errors import DataError

_HH_MARK = re.compile(r"\n\n(Human|Assistant):")
_HH_GLUED = re.compile(r"(?:^|\s)(Human|Assistant):")  # a speaker's mark without the blank line before it


def _hh_said(said: str, number: int, who: str, field: str) -> str:
    """One turn's text, stripped: refused when empty or when another speaker's mark is glued into it."""
    said = said.strip()
    if not said:
        raise DataError(f"turn {number} ({who}) is empty", field=field)
    glued = ("Human:" in said or "Assistant:" in said) and _HH_GLUED.search(said)
    if glued:
        raise DataError(f"turn {number} ({who}) holds a '{glued.group(1)}:' without the blank line before it; "
                        "two turns are glued into one", field=field)
    return said


def _hh_turns(text: str, field: str) -> list[dict]:
    """The turns of an hh-rlhf transcript "\n\nHuman: … \n\nAssistant: …": Human first, taking turns, none
    empty, no speaker glued into another's turn, the Assistant's answer last."""
    parts = _HH_MARK.split("\n\n" + text.lstrip("\n"))
    if parts[0].strip() or len(parts) < 5:
        raise DataError('does not parse as "\\n\\nHuman: … \\n\\nAssistant: …" turns', field=field)
    speakers = parts[1::2]
    turns = []
    for number, (who, said) in enumerate(zip(speakers, parts[2::2]), start=1):
        said = _hh_said(said, number, who, field)
        if number == 1 and who != "Human":
            raise DataError("turn 1 is the Assistant's; a transcript starts with the Human's", field=field)
        if number > 1 and who == speakers[number - 2]:
            raise DataError(f"turns {number - 1} and {number} are both the {who}'s; Human and Assistant must "
                            "take turns", field=field)
        turns.append({"role": "user" if who == "Human" else "assistant", "content": said})
    if speakers[-1] != "Assistant":
        raise DataError(f"ends with turn {len(speakers)}, the Human's; expected the Assistant's answer last",
                        field=field)
    return turns


def _split_shared_prefix(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected): the turns both conversations share, then the one answer where each differs."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == len(chosen) or n == len(rejected):
        raise DataError("is identical to 'rejected', or a prefix of it; no answer to prefer", field="chosen")
    if n == 0 or chosen[n - 1]["role"] != "user":
        raise DataError("shares no prompt ending in a user turn with 'rejected'", field="chosen")
    for key, turns in (("chosen", chosen), ("rejected", rejected)):
        if len(turns) - n != 1:
            raise DataError(f"goes on for {len(turns) - n} turns after the prompt it shares with the other side; "
                            "only the last answer may differ", field=key)
    return chosen[:n], chosen[n:], rejected[n:]


def _hh_rlhf_rows(record: dict) -> list[dict]:
    """hh-rlhf: the shared turns are the prompt, the differing last assistant turns are chosen and rejected."""
    chosen_text, rejected_text = _text(record, "chosen"), _text(record, "rejected")
    chosen = _hh_turns(chosen_text, "chosen")
    cut = chosen_text.rfind("\n\nAssistant:")
    tail = _HH_MARK.split(rejected_text[cut:]) if cut > 0 and rejected_text.startswith(chosen_text[:cut]) else []
    if len(tail) == 3 and tail[:2] == ["", "Assistant"]:  # the usual case: the same text up to the last answer
        answer = _hh_said(tail[2], len(chosen), "Assistant", "rejected")
        if answer == chosen[-1]["content"]:
            raise DataError("is identical to 'rejected', or a prefix of it; no answer to prefer", field="chosen")
        return [{"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": [{"role": "assistant", "content": answer}]}]
    prompt, chosen, rejected = _split_shared_prefix(chosen, _hh_turns(rejected_text, "rejected"))
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]


def _trl_conversational_implicit_rows(record: dict) -> list[dict]:
    """trl-conversational-implicit: the messages both sides share become the explicit prompt."""
    chosen, rejected = _messages(record.get("chosen"), "chosen"), _messages(record.get("rejected"), "rejected")
    check_turns(chosen, "chosen", "conversation")
    check_turns(rejected, "rejected", "conversation")
    prompt, chosen, rejected = _split_shared_prefix(chosen, rejected)
    return [{"prompt": prompt, "chosen": chosen, "rejected": rejected}]
