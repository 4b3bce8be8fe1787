"""How big a spec may be, so that validation answers in a blink whatever the file holds.

A spec is a page of text that describes at most a few thousand training runs; a file far past that is a mistake
(a generated list gone wrong, a binary file) and is refused with one clear error before anything expensive is
built. The README's Spec section lists these limits.
"""

from __future__ import annotations

from ltspec import masks

MAX_FILE_BYTES = 1 << 20  # the largest shipped spec is under 2 KB
MAX_DEPTH = 16  # key path parts plus brackets; the deepest spec value (`measure.pairs[0][1]`) has 4
MAX_SEEDS = 100
MAX_SWEEP_POINTS = 1_000
MAX_STAGES = 50_000  # the whole paper is about 5,300 stages; a plan this size still compiles in a blink
MAX_NAME_LENGTH = 200  # the spec's name is a folder name (reports/<name>) and the default MLflow experiment
MAX_EXPERIMENT_LENGTH = 500  # MLflow refuses longer experiment names
MAX_PATH_LENGTH = 4096  # PATH_MAX on Linux
MAX_PROBLEMS = 100  # problems listed; the count of the rest follows


def stage_bound(spec) -> int:
    """An upper bound of the stages one sweep point of `spec` compiles to, counted without building them.

    Per seed: the dense run, its R_p measurement and interpolations; per mask, its mask stage, an IMP round's
    retraining, every arm, the evaluation of the pruned dense weights, its R_p measurement, its interpolations,
    each copy of an arm with its interpolation, and its comparisons along its run and with other seeds'; per two
    tables, a comparison at each sparsity they share (at most as many as the smaller has masks).
    """
    counts = [mask_count(spec, name) for name in spec.masks]
    made = sum(counts)
    interpolations = len(spec.interpolation.pairs)
    copies = 2 * len(spec.instability.arms) * spec.instability.copies
    compared = spec.mask_overlap.compare
    across = sum(min(a, b) for index, a in enumerate(counts) for b in counts[index + 1:]) if "generators" in compared \
        else 0
    per_mask = ("rounds" in compared) + ("seeds" in compared) * (len(spec.seeds) - 1)
    return len(spec.seeds) * (2 + interpolations + across
                              + made * (len(spec.arms) + 4 + interpolations + copies + per_mask))


def mask_count(spec, name: str, seen: frozenset[str] = frozenset()) -> int:
    """How many masks a table makes; IMP's rounds are counted, not listed (`rounds = 10**9` is one line); a table
    made from other tables' masks (a shuffle) makes as many as they do (a circle of them, an error the checks
    report, counts nothing)."""
    generator = spec.masks[name]
    sources = masks.generator(generator.kind).sources(generator).values()
    if sources:
        return sum(mask_count(spec, table, seen | {name}) for table in sources if table in spec.masks
                   and table not in seen | {name})
    round_count = getattr(generator, "round_count", None)
    return round_count() if round_count else len(generator.target_sparsities())
