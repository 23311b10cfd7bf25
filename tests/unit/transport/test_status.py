from asyncrl.transport.status import StatusFile, read_statuses, stall_reason


def test_the_stall_reason_names_the_process_that_has_waited_longest(tmp_path):
    assert stall_reason(tmp_path) == "starting up"
    trainer, orchestrator = StatusFile(tmp_path, "trainer"), StatusFile(tmp_path, "orchestrator")
    trainer.waiting("the step 5 batch")
    orchestrator.waiting("weights v3 from the trainer (step 5)")
    since = {r["component"]: r["since"] for r in read_statuses(tmp_path)}
    reason = stall_reason(tmp_path, now=since["trainer"] + 42)
    assert reason == "trainer: waiting for the step 5 batch (42s)"
    trainer.working()
    assert stall_reason(tmp_path).startswith("orchestrator: waiting for weights v3")
    orchestrator.working()
    assert stall_reason(tmp_path) == "starting up"
