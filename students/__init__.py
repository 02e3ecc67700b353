"""The students that ship with distillery, one file each, each registering itself with the engine's registry
(`distill.student_registry`): importing this package registers `tinybert`, `distilbert` and `bilstm`, in that
order. Look a student up with `get_student(cfg.kind)`; nothing here branches on the kind."""

# ruff: noqa: I001  (importing registers the students, and messages list the kinds in that order: the default first)

from __future__ import annotations

from distill.student_registry import Student, get_student, registered
from distill.students import tinybert  # noqa: F401
from distill.students import distilbert  # noqa: F401
from distill.students import bilstm  # noqa: F401
from distill.students.common import StudentError

# Every registered student by name, each with its config section (`.config`): the manual's reference pages
# list the `student:` keys per kind from it.
STUDENTS: dict[str, Student] = registered()

__all__ = ["STUDENTS", "Student", "StudentError", "get_student"]
