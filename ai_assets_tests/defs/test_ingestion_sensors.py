"""Integration: the landing-zone sensor and the daily schedule, evaluated the way the daemon
does (`evaluate_tick` with a context built on a real instance), against real landing files.

`build_sensor_context` needs both `definitions` (to resolve the partitioned job of each run
request) and `resources` (an asset sensor's resources are not taken from the definitions)."""

import json
from datetime import UTC, date, datetime, timedelta

from dagster import DefaultScheduleStatus, DefaultSensorStatus, build_schedule_context, build_sensor_context

from ai_assets.defs.ingestion.sensors import landing_zone_sensor
from ai_assets.defs.pipeline.jobs import daily_ingestion_schedule
from ai_assets.resources import LandingZone

MONDAY = date(2025, 3, 3)


def tick(workspace, instance, cursor: str | None = None):
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=workspace.defs(),
        resources={"landing_zone": LandingZone(root=str(workspace.landing))})
    return landing_zone_sensor.evaluate_tick(context)


def day_dir(workspace, day: date):
    return workspace.landing / "messages" / day.isoformat()


def test_one_run_request_per_day_with_new_files_then_skip(workspace, instance):
    days = [MONDAY + timedelta(days=i) for i in range(3)]
    for day in days:
        workspace.simulate(day, per_day=50)
    first = tick(workspace, instance)
    assert first.skip_message is None
    assert [r.partition_key for r in first.run_requests] == [d.isoformat() for d in days]
    run_keys = [r.run_key for r in first.run_requests]
    assert len(set(run_keys)) == 3 and all(k.startswith(f"{d}:") for k, d in zip(run_keys, days))
    for request in first.run_requests:
        assert request.tags["dagster/partition"] == request.partition_key
        assert request.tags["ai_assets/landing_fingerprint"] == request.run_key.split(":", 1)[1]
    assert set(json.loads(first.cursor)) == {d.isoformat() for d in days}

    second = tick(workspace, instance, first.cursor)
    assert second.run_requests == [] and second.skip_message == "no new or changed landing files"
    assert second.cursor == first.cursor

    # The same tick evaluated again (e.g. after a daemon restart) asks for the same run keys,
    # so the daemon never launches the work twice.
    assert [r.run_key for r in tick(workspace, instance).run_requests] == run_keys


def test_run_request_launches_the_ingestion_job_for_its_day(workspace, instance):
    workspace.simulate(MONDAY, per_day=50)
    (request,) = tick(workspace, instance).run_requests
    job = workspace.defs().resolve_job_def("ingestion_job")
    result = job.execute_in_process(partition_key=request.partition_key, tags=request.tags,
                                    instance=instance)
    assert result.success
    run = instance.get_run_by_id(result.run_id)
    assert run.tags["ai_assets/landing_fingerprint"] == request.tags["ai_assets/landing_fingerprint"]
    assert run.tags["dagster/partition"] == MONDAY.isoformat()


def test_changed_or_added_file_requests_a_new_run_for_that_day_only(workspace, instance):
    days = [MONDAY + timedelta(days=i) for i in range(3)]
    for day in days:
        workspace.simulate(day, per_day=50)
    first = tick(workspace, instance)
    keys = {r.partition_key: r.run_key for r in first.run_requests}

    # A late file for one day, a grown file for another; the third day is untouched.
    (day_dir(workspace, days[0]) / "app-late.jsonl").write_text(
        '{"message_id":"late-1","customer_id":"c-000001","channel":"app",'
        '"received_at":"2025-03-03T23:59:00Z","text":"card not arrived"}\n')
    with (day_dir(workspace, days[2]) / "chat.jsonl").open("ab") as fh:
        fh.write(b'{"message_id":"late-2","customer_id":"c-000002","channel":"chat",'
                 b'"received_at":"2025-03-05T23:59:00Z","text":"top up failed"}\n')
    # A file still being written (dot-prefixed temporary name) is not picked up.
    (day_dir(workspace, days[1]) / ".email.jsonl.tmp").write_bytes(b'{"partial": ')

    second = tick(workspace, instance, first.cursor)
    assert [r.partition_key for r in second.run_requests] == [days[0].isoformat(), days[2].isoformat()]
    for request in second.run_requests:
        assert request.run_key != keys[request.partition_key]
    cursor = json.loads(second.cursor)
    assert cursor[days[1].isoformat()] == json.loads(first.cursor)[days[1].isoformat()]

    assert tick(workspace, instance, second.cursor).run_requests == []


def test_days_outside_the_partitions_range_are_ignored(workspace, instance):
    assert tick(workspace, instance).run_requests == []  # no landing zone yet: nothing to do
    today = datetime.now(UTC).date()
    for outside in (date(2024, 12, 31), today, today + timedelta(days=30)):
        workspace.simulate(outside, per_day=20)
    (workspace.landing / "messages" / "not-a-day").mkdir(parents=True)
    (workspace.landing / "messages" / "not-a-day" / "app.jsonl").write_text("{}\n")
    (workspace.landing / "messages" / MONDAY.isoformat()).mkdir(parents=True)  # folder, no files

    result = tick(workspace, instance)
    assert result.run_requests == [] and result.skip_message

    workspace.simulate(MONDAY, per_day=20)
    result = tick(workspace, instance)
    assert [r.partition_key for r in result.run_requests] == [MONDAY.isoformat()]
    assert set(json.loads(result.cursor)) == {MONDAY.isoformat()}


def landing_file(workspace, folder: str) -> None:
    path = workspace.landing / "messages" / folder
    path.mkdir(parents=True, exist_ok=True)
    (path / "app.jsonl").write_text('{"message_id":"m1","customer_id":"c1","channel":"app",'
                                    '"received_at":"2025-03-03T09:00:00Z","text":"card not arrived"}\n')


def test_folders_that_can_never_be_a_partition_are_logged_and_counted(workspace, instance, capsys):
    today = datetime.now(UTC).date()
    never = ["2026-02-30", "9999-12-31", "not-a-date"]  # sorted, as the sensor lists them
    for folder in [*never, today.isoformat(), MONDAY.isoformat()]:
        landing_file(workspace, folder)
    capsys.readouterr()

    result = tick(workspace, instance)
    assert [r.partition_key for r in result.run_requests] == [MONDAY.isoformat()]
    assert set(json.loads(result.cursor)) == {MONDAY.isoformat()}
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if "landing folder(s) ignored" in line]
    # Exactly these names: today's folder is not among them.
    assert "WARNING" in warning and "3 landing folder(s) ignored" in warning and warning.endswith(f": {never}")

    # Nothing new for the partitions: the skip reason still says what is being ignored.
    again = tick(workspace, instance, result.cursor)
    assert again.run_requests == [] and again.skip_message.startswith("no new or changed landing files; 3 ")
    assert "9999-12-31" in again.skip_message and "2026-02-30" in again.skip_message


def test_todays_folder_waits_quietly_for_its_day_to_close(workspace, instance, capsys):
    today = datetime.now(UTC).date()
    for day in (today, today + timedelta(days=1)):
        landing_file(workspace, day.isoformat())
    capsys.readouterr()
    result = tick(workspace, instance)
    assert result.run_requests == [] and result.skip_message == "no new or changed landing files"
    assert "ignored" not in capsys.readouterr().err

    # The day after tomorrow is not a day that is still open: upstream has the date wrong.
    landing_file(workspace, (today + timedelta(days=2)).isoformat())
    result = tick(workspace, instance)
    assert result.run_requests == [] and "1 landing folder(s) ignored" in result.skip_message
    assert str([(today + timedelta(days=2)).isoformat()]) in result.skip_message


def test_folder_names_must_be_the_iso_spelling_of_a_day(workspace, instance):
    # date.fromisoformat would read both as 2025-03-03; the upstream system never writes them.
    for folder in ("20250303", "2025-W10-1"):
        landing_file(workspace, folder)
    result = tick(workspace, instance)
    assert result.run_requests == [] and "2 landing folder(s) ignored" in result.skip_message


def test_sensor_and_schedule_start_running():
    assert landing_zone_sensor.default_status == DefaultSensorStatus.RUNNING
    assert landing_zone_sensor.job_name == "ingestion_job"
    assert daily_ingestion_schedule.default_status == DefaultScheduleStatus.RUNNING
    assert daily_ingestion_schedule.job_name == "ingestion_job"
    assert daily_ingestion_schedule.cron_schedule == "30 1 * * *"
    assert daily_ingestion_schedule.execution_timezone in (None, "UTC")


def test_daily_schedule_targets_yesterdays_partition(instance):
    for fired_at, expected in [
        (datetime(2025, 3, 5, 1, 30, tzinfo=UTC), "2025-03-04"),
        (datetime(2025, 3, 1, 1, 30, tzinfo=UTC), "2025-02-28"),
        (datetime(2025, 1, 1, 1, 30, tzinfo=UTC), "2024-12-31"),
    ]:
        context = build_schedule_context(instance=instance, scheduled_execution_time=fired_at)
        data = daily_ingestion_schedule.evaluate_tick(context)
        if expected < "2025-01-01":  # before the first partition: nothing to run
            assert not data.run_requests
            continue
        (request,) = data.run_requests
        assert request.partition_key == expected
        assert request.tags["dagster/partition"] == expected
