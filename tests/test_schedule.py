"""Which ready stage takes a free slot: critical path first, spread over the devices, a whole-GPU stage not starved
by small ones. The rule is driven on a simulated clock, as benchmarks/schedule.py drives it on the paper's plan."""

from hypothesis import given, settings
from hypothesis import strategies as st

import zlib

from ltspec.kinds import dense
from ltspec.kinds.base import DataConfig, ModelConfig
from ltspec.plan import Stage
from ltspec.recipe import ConstantSchedule, Recipe, Sgd
from ltspec.runners.schedule import (Frontier, choose, critical_path, critical_path_first, epochs_cost, plan_order,
                                     simulate)


def stage(name: str, epochs: int, *parents: Stage) -> Stage:
    """A stage of `epochs` after `parents`, its key made its own by a seed drawn from its name."""
    recipe = Recipe(max(epochs, 1), 0.1, Sgd(), ConstantSchedule(kind="constant"))
    config = dense.DenseConfig(DataConfig("digits", 128, "none", 0.0), ModelConfig("mlp", 1.0),
                               zlib.crc32(name.encode()), recipe)
    return Stage(dense.KIND, config, tuple(parent.key for parent in parents), epochs=epochs, labels={"name": name})


def by_name(stages: list[Stage]) -> dict[str, Stage]:
    return {s.labels["name"]: s for s in stages}


def one_slot_each(stage: Stage, device: str) -> int:
    return 1


def chain_behind_short_stages() -> list[Stage]:
    """Four one-epoch stages first in plan order, then a chain of three ten-epoch stages."""
    shorts = [stage(f"short{index}", 1) for index in range(4)]
    a = stage("a", 10)
    b = stage("b", 10, a)
    return [*shorts, a, b, stage("c", 10, b)]


def test_critical_path_is_the_longest_work_from_a_stage_to_the_end():
    stages = by_name(chain_behind_short_stages())
    path = critical_path(list(stages.values()), lambda s: s.epochs)
    assert path[stages["a"].key] == 30 and path[stages["b"].key] == 20 and path[stages["c"].key] == 10
    assert path[stages["short0"].key] == 1


def test_critical_path_first_starts_the_long_chain_at_once_where_plan_order_leaves_it_last():
    stages = chain_behind_short_stages()
    names = by_name(stages)
    duration = lambda s: float(s.epochs)  # noqa: E731
    first = simulate(stages, critical_path_first(stages, duration), duration, one_slot_each, {"cpu": 2})
    assert first.starts[names["a"].key] == (0.0, "cpu")
    assert [key for key, _ in sorted(first.starts.items(), key=lambda item: item[1][0])][:2] == \
        [names["a"].key, names["short0"].key]
    assert first.makespan == 30.0  # the bound: the chain's 30 epochs (the work is 34 over 2 slots)
    fifo = simulate(stages, plan_order(stages), duration, one_slot_each, {"cpu": 2})
    assert fifo.starts[names["a"].key][0] == 2.0 and fifo.makespan == 32.0


def test_ties_go_in_plan_order_and_a_stage_goes_to_the_device_with_most_free_slots():
    stages = [stage(f"s{index}", 5) for index in range(3)]
    frontier = Frontier(stages, critical_path_first(stages, epochs_cost))
    free = {"cuda:0": 2, "cuda:1": 3}
    taken = frontier.take(one_slot_each, free)
    assert taken == (stages[0], "cuda:1")
    assert choose(stages[1:], one_slot_each, {"cuda:0": 2, "cuda:1": 2}) == (0, "cuda:0")


def test_a_whole_gpu_stage_is_held_a_gpu_rather_than_starved_by_small_ones():
    """Two GPUs of four slots; a dense stage leads to a chain of three whole-GPU stages, and forty small stages are
    ready from the start. When the chain's first stage is ready and fits nowhere, one GPU drains for it while the
    small stages go on on the other; without the hold they would keep both GPUs until they run out."""
    dense = stage("dense", 1)
    chain = [stage("big1", 10, dense)]
    for index in (2, 3):
        chain.append(stage(f"big{index}", 10, chain[-1]))
    small = [stage(f"small{index}", 3) for index in range(40)]
    stages = [*small, dense, *chain]
    big = {s.key for s in chain}
    need = lambda s, device: 4 if s.key in big else 1  # noqa: E731
    duration = lambda s: float(s.epochs)  # noqa: E731
    result = simulate(stages, critical_path_first(stages, duration), duration, need, {"cuda:0": 4, "cuda:1": 4})
    assert result.starts[chain[0].key][0] == 3.0  # when the small stages that started beside the dense one end
    assert result.makespan == 33.0  # the chain ends last: 1 + 2 of drain + 30


def test_a_stage_becomes_ready_when_its_last_parent_settles_whatever_the_outcome():
    a, b = stage("a", 1), stage("b", 1)
    c = stage("c", 1, a, b)
    frontier = Frontier([a, b, c], plan_order([a, b, c]))
    free = {"cpu": 4}
    assert frontier.take(one_slot_each, free)[0] == a and frontier.take(one_slot_each, free)[0] == b
    assert frontier.take(one_slot_each, free) is None
    frontier.settle(a.key)
    assert frontier.take(one_slot_each, free) is None
    frontier.settle(b.key)
    assert frontier.take(one_slot_each, free)[0] == c and frontier.unstarted == 0


@st.composite
def dags(draw) -> tuple[list[Stage], dict[str, int]]:
    """A random plan in dependency order (each stage's parents among the earlier ones), with each stage's need."""
    stages: list[Stage] = []
    needs = {}
    for index in range(draw(st.integers(1, 25))):
        parents = draw(st.lists(st.integers(0, index - 1), max_size=3, unique=True)) if stages else []
        stages.append(stage(f"s{index}", draw(st.integers(0, 20)), *(stages[parent] for parent in parents)))
        needs[stages[-1].key] = draw(st.sampled_from([1, 1, 1, 2, 4]))
    return stages, needs


@settings(max_examples=60, deadline=None)
@given(dags(), st.integers(1, 3), st.sampled_from([1, 4]))
def test_every_schedule_respects_parents_and_capacity_and_meets_its_bounds(dag, devices, per_device):
    stages, needs = dag
    duration = epochs_cost
    need = (lambda s, device: min(needs[s.key], per_device)) if per_device > 1 else one_slot_each
    slots = {f"cuda:{index}": per_device for index in range(devices)}
    result = simulate(stages, critical_path_first(stages, duration), duration, need, slots)
    end = {s.key: result.starts[s.key][0] + duration(s) for s in stages}
    for s in stages:
        assert all(result.starts[s.key][0] >= end[parent] - 1e-9 for parent in s.parents)
    for s in stages:  # at each start, the stages running on its device fit in the device
        time, device = result.starts[s.key]
        running = [o for o in stages if result.starts[o.key][1] == device and
                   result.starts[o.key][0] <= time < end[o.key]]
        assert sum(need(o, device) for o in running) <= per_device
    total_slots = devices * per_device
    work = sum(need(s, "cuda:0") * duration(s) for s in stages)
    path = max(critical_path(stages, duration).values())
    assert result.makespan >= max(work / total_slots, path) - 1e-9
    if per_device == 1:  # one slot per stage: no stage ever waits for room, so Graham's bound for list schedules
        assert result.makespan <= work / total_slots + path + 1e-9
