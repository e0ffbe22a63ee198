"""One read serves many askers: concurrent sync reads share a read of each source,
max_age serves the snapshot, globs choose sources, values are marked live/cached."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from clumon.agent.collectors import Sample
from clumon.agent.sampler import Sampler
from clumon.agent.shared_reads import SharedReads


class Counting:
    """A collector that counts its reads; each read takes a while (like a slow /proc)."""

    def __init__(self, name: str, series: list[str], pause: float = 0.05):
        self.name = name
        self.default_interval = 1.0
        self.series = series
        self.pause = pause
        self.calls = 0
        self.threads: set[str] = set()

    def collect(self) -> list[Sample]:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        time.sleep(self.pause)
        return [Sample(s, float(self.calls)) for s in self.series]


def make(*collectors):
    sampler = Sampler(list(collectors), 1.0)
    published = []
    executor = ThreadPoolExecutor(1, thread_name_prefix="collect")
    return SharedReads(sampler, executor, published.append), published, executor


def test_n_concurrent_sync_reads_cause_one_read_of_each_source():
    cpu, mem = Counting("cpu", ["node_cpu_a", "node_cpu_b"]), Counting("memory", ["node_memory_x"])
    reads, published, executor = make(cpu, mem)

    async def main():
        await reads.read(reads.sampler.sources)  # the first sweep
        before = (cpu.calls, mem.calls)
        answers = await asyncio.gather(*(reads.answer([], 0.0) for _ in range(20)))
        return before, answers

    (before, answers) = asyncio.run(main())
    executor.shutdown()
    assert (cpu.calls, mem.calls) == (before[0] + 1, before[1] + 1)
    assert len(published) == 2, "the shared read is handed on once"
    # the sweep is the schedule's; the sync read between ticks keeps the phase and is not stored
    assert [r.scheduled for r in published] == [True, False]
    assert all(s.next_due > time.monotonic() + 0.5 for s in reads.sampler.sources)
    assert all(a["live"] and a["cached"] == 0 for a in answers)
    assert {tuple(a["values"]) for a in answers} == {("node_cpu_a", "node_cpu_b", "node_memory_x")}
    assert cpu.threads == {"collect_0"}, "reads happen off the loop, in the collecting thread"


def test_a_sync_read_joins_a_scheduled_read_in_flight():
    cpu = Counting("cpu", ["node_cpu_a"], pause=0.2)
    reads, published, executor = make(cpu)

    async def main():
        scheduled = asyncio.create_task(reads.read(reads.sampler.sources))
        await asyncio.sleep(0.05)  # the scheduled read is in flight
        answer = await reads.answer([], 0.0)
        await scheduled
        return answer

    answer = asyncio.run(main())
    executor.shutdown()
    assert cpu.calls == 1 and len(published) == 1
    assert answer["values"]["node_cpu_a"][3] is True


def test_max_age_serves_the_snapshot_and_marks_it_cached():
    cpu = Counting("cpu", ["node_cpu_a"], pause=0)
    reads, _, executor = make(cpu)

    async def main():
        await reads.read(reads.sampler.sources)
        return await reads.answer([], 3600.0)

    answer = asyncio.run(main())
    executor.shutdown()
    assert cpu.calls == 1
    value, ts, age, live = answer["values"]["node_cpu_a"]
    assert value == 1.0 and live is False and age >= 0 and answer["cached"] == 1 and not answer["live"]


def test_globs_read_only_the_sources_that_hold_matching_series():
    cpu, mem = Counting("cpu", ["node_cpu_a"], pause=0), Counting("memory", ["node_memory_x"], pause=0)
    reads, _, executor = make(cpu, mem)

    async def main():
        await reads.read(reads.sampler.sources)
        return await reads.answer(["node_mem*"], 0.0)

    answer = asyncio.run(main())
    executor.shutdown()
    assert (cpu.calls, mem.calls) == (1, 2)
    assert list(answer["values"]) == ["node_memory_x"]


def test_a_failing_source_serves_its_old_values_as_cached():
    class Flaky(Counting):
        def collect(self):
            if self.calls >= 1:
                self.calls += 1
                raise OSError("gone")
            return super().collect()

    flaky = Flaky("flaky", ["node_flaky"], pause=0)
    reads, published, executor = make(flaky)

    async def main():
        await reads.read(reads.sampler.sources)
        return await reads.answer([], 0.0)

    answer = asyncio.run(main())
    executor.shutdown()
    assert answer["values"]["node_flaky"][3] is False
    assert published[-1].failures == [("flaky", "OSError: gone")]


def test_the_first_sweep_is_not_followed_by_a_second_read_at_once():
    cpu = Counting("cpu", ["node_cpu_a"], pause=0)
    reads, _, executor = make(cpu)

    async def main():
        await reads.read(reads.sampler.sources)
        return reads.sampler.due()

    due = asyncio.run(main())
    executor.shutdown()
    assert due == [] and cpu.calls == 1


class OnLoop(Counting):
    """A collector of the kind that never blocks: read on the loop."""

    on_loop = True


def test_on_loop_sources_are_read_on_the_loop_and_shared_like_the_others():
    light, heavy = OnLoop("cpu", ["node_cpu_a"], pause=0), Counting("processes", ["node_proc_x"], pause=0.05)
    reads, published, executor = make(light, heavy)

    async def main():
        await reads.read(reads.sampler.sources)
        before = (light.calls, heavy.calls)
        answers = await asyncio.gather(*(reads.answer([], 0.0) for _ in range(10)))
        return before, answers

    (before, answers) = asyncio.run(main())
    executor.shutdown()
    assert (light.calls, heavy.calls) == (before[0] + 1, before[1] + 1), "ten reads, one read of each source"
    assert light.threads == {"MainThread"} and heavy.threads == {"collect_0"}
    assert all(a["live"] and set(a["values"]) == {"node_cpu_a", "node_proc_x"} for a in answers)
    # each read is published once, and the two kinds separately
    assert [r.sources for r in published] == [("cpu",), ("processes",), ("cpu",), ("processes",)]


def test_a_failing_on_loop_source_is_reported_and_does_not_stop_the_loop():
    class Broken(OnLoop):
        def collect(self):
            raise OSError("no such file")

    reads, published, executor = make(Broken("cpu", ["node_cpu_a"], pause=0), OnLoop("load", ["node_load1"], pause=0))

    async def main():
        await reads.read(reads.sampler.sources)
        return await reads.answer(["node_load*"], 0.0)

    answer = asyncio.run(main())
    executor.shutdown()
    assert published[0].failures == [("cpu", "OSError: no such file")]
    assert answer["values"]["node_load1"][3] is True


def test_a_publish_that_fails_does_not_stop_the_schedule(caplog):
    """The schedule reads on-loop sources inline; a publish that raises (a spool
    write failing, say) is logged and the next tick reads and publishes again."""
    cpu = Counting("cpu", ["node_cpu_a"], pause=0)
    cpu.on_loop = True
    sampler = Sampler([cpu], 1.0)
    published = []

    def publish(reading):
        if not published:
            published.append(None)
            raise OSError(28, "No space left on device")
        published.append(reading)

    executor = ThreadPoolExecutor(1)
    reads = SharedReads(sampler, executor, publish)

    async def main():
        reads.start(sampler.sources, inline=True)  # must not raise
        reads.start(sampler.sources, inline=True)

    asyncio.run(main())
    executor.shutdown()
    assert cpu.calls == 2 and len(published) == 2 and published[1].values == {"node_cpu_a": 2.0}
    assert "No space left on device" in caplog.text


def test_a_sync_read_of_a_due_source_is_the_schedules_read():
    cpu = Counting("cpu", ["node_cpu_a"], pause=0)
    reads, published, executor = make(cpu)

    async def main():
        await reads.read(reads.sampler.sources)
        src = reads.sampler.sources[0]
        src.next_due = time.monotonic() - 0.01  # the tick is due now
        await reads.answer([], 0.0)
        return src.next_due

    next_due = asyncio.run(main())
    executor.shutdown()
    assert cpu.calls == 2 and [r.scheduled for r in published] == [True, True]
    assert next_due > time.monotonic() + 0.5, "the phase moved on as a scheduled read moves it"
