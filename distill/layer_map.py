"""Which student layer learns from which teacher layer.

Layers are numbered as in TinyBERT: 0 = embeddings, 1..M = student transformer layers, 1..N = teacher's.
A map is a list of (student, teacher) pairs over transformer layers; the embedding pair (0, 0) is
implied and used only by `embedding_mse`.
"""

from __future__ import annotations

from distill.errors import DistillError


class LayerMapError(DistillError):
    pass


def layer_map(spec: str | list[list[int]] | list[tuple[int, int]], n_student: int,
              n_teacher: int) -> list[tuple[int, int]]:
    """`uniform`: student layer m learns teacher layer floor(m * N / M) (exactly m * N / M when M
    divides N, as in the paper; the last layers always meet). `top`: the teacher's last M layers.
    `bottom`: its first M. A list: explicit pairs, checked against both depths."""
    if isinstance(spec, str):
        if spec not in ("uniform", "top", "bottom"):
            raise LayerMapError(f"unknown layer map {spec!r}; expected uniform, top, bottom or a list of "
                                "[student, teacher] pairs")
        if n_student > n_teacher:
            raise LayerMapError(f"layer map {spec!r}: a student of {n_student} layers cannot map onto a teacher "
                                f"of {n_teacher} layers; give explicit pairs")
        if spec == "uniform":
            return [(m, (m * n_teacher) // n_student) for m in range(1, n_student + 1)]
        if spec == "top":
            return [(m, n_teacher - n_student + m) for m in range(1, n_student + 1)]
        return [(m, m) for m in range(1, n_student + 1)]
    pairs = []
    for item in spec:
        if len(item) != 2:
            raise LayerMapError(f"layer map entry {item!r}: expected a [student, teacher] pair")
        s, t = int(item[0]), int(item[1])
        if not 1 <= s <= n_student:
            raise LayerMapError(f"layer map pair {[s, t]}: student layer {s} is outside 1..{n_student}")
        if not 1 <= t <= n_teacher:
            raise LayerMapError(f"layer map pair {[s, t]}: teacher layer {t} is outside 1..{n_teacher}")
        pairs.append((s, t))
    if not pairs:
        raise LayerMapError("layer map is an empty list")
    return pairs
