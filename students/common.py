"""What the student modules share: their error type and the rule for copying teacher layers into a student."""

from __future__ import annotations

from distill.student_registry import StudentError

__all__ = ["StudentError", "check_layer_copy"]


def check_layer_copy(student: tuple[int, int, int], teacher: tuple[int, int, int], layers: list[int],
                     n_student: int, n_teacher: int) -> None:
    """Copying teacher layers (1-based `layers`, one per student layer) needs equal hidden/ffn/heads."""
    if student != teacher:
        raise StudentError("init: teacher copies teacher layers, which needs the student's width to match the "
                           "teacher's: student hidden/ffn/heads {}/{}/{}, teacher {}/{}/{}".format(*student, *teacher))
    if len(layers) != n_student:
        raise StudentError(f"student.init_layers names {len(layers)} teacher layers for a student of {n_student} "
                           "layers")
    for layer in layers:
        if not 1 <= layer <= n_teacher:
            raise StudentError(f"student.init_layers: teacher layer {layer} is outside 1..{n_teacher}")
