"""The mean teacher of OXnet's soft focal loss: an exponential moving average of the student (notebook 07).

After each optimiser step, ``teacher = a * teacher + (1 - a) * student`` with ``a = min(1 - 1/(step + 1), decay)``
(the official ``update_ema_variables``; ``decay`` 0.99): early on the teacher is the plain average of the
student's weights so far, later an EMA with the stated decay. Buffers (none in the course's detector, which
uses GroupNorm) are copied.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

#: The teacher's decay in the paper and the official code.
TEACHER_DECAY: float = 0.99


def make_teacher(student: nn.Module) -> nn.Module:
    """A frozen copy of ``student`` in eval mode (no gradients)."""
    teacher = copy.deepcopy(student)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def ema_rate(step: int | None, decay: float = TEACHER_DECAY) -> float:
    """The rate used at optimiser step ``step`` (0-based); ``None``: ``decay`` itself."""
    return float(decay) if step is None else min(1.0 - 1.0 / (step + 1), float(decay))


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, decay: float = TEACHER_DECAY, step: int | None = None) -> float:
    """Move ``teacher`` towards ``student`` in place; returns the rate used."""
    rate = ema_rate(step, decay)
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(rate).add_(s.detach(), alpha=1.0 - rate)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)
    return rate
