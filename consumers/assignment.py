"""Which consumer worker hosts which subscribing departments, and the once-per-run parts.

A run may spread its subscribers over several consumer processes (``exchange run
--consumer-workers C``). Each department is one unit of work with its own consumer group
and delivery topic, so its deliveries, duplicates and lag are counted where it runs; the
division is fixed by the scenario alone (every worker computes the same one, nothing is
negotiated):

- departments that receive a step of a workflow form one unit: a workflow is complete
  when all its steps have arrived for a master key, wherever they arrive, so the tracker
  that waits for them must see them all (consumers/reactions.py ``WorkflowTracker``);
- units are sorted by their first department and dealt round-robin, the workflow unit
  (if any) first, so worker 0 gets it;
- worker 0 hosts the accountant as well (consumers/accountant.py): the audit and
  dead-letter topics are read once per run, so every denial and dead letter is counted
  exactly once.

Reactions need nothing more: a reaction fires on one department's deliveries and
publishes under its own trace-id producer (consumers/reactions.py), so it runs where its
department does.
"""

from __future__ import annotations

from schemas.scenario import Scenario

ACCOUNTANT_WORKER = 0  #: the consumer worker that reads the audit and dead-letter topics


def subscribing_units(scenario: Scenario) -> list[tuple[str, ...]]:
    """The scenario's subscribing departments in indivisible units (sorted departments; the
    workflow unit first, then one unit per other department, by name)."""
    departments = sorted({s.consumer for s in scenario.subscriptions})
    steps = {step for w in scenario.workflows for step in w.steps}
    joint = tuple(sorted({s.consumer for s in scenario.subscriptions if s.entry in steps}))
    rest = [(d,) for d in departments if d not in joint]
    return [joint, *rest] if joint else rest


def assign_departments(scenario: Scenario, workers: int) -> list[list[str]]:
    """Subscribing departments per consumer worker: ``workers`` lists, every department in
    exactly one, units dealt round-robin (:func:`subscribing_units`).

    Raises ValueError when ``workers`` is below 1 or above the number of units (a worker
    with nothing to read would only add a process).
    """
    units = subscribing_units(scenario)
    if workers < 1 or workers > max(1, len(units)):
        raise ValueError(
            f"--consumer-workers {workers}: {scenario.name} has {len(units)} unit(s) of subscribing departments to divide "
            f"(departments receiving a workflow's steps count as one), so 1 … {max(1, len(units))}"
        )
    out: list[list[str]] = [[] for _ in range(workers)]
    for n, unit in enumerate(units):
        out[n % workers].extend(unit)
    return [sorted(w) for w in out]
