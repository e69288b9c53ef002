"""`export --out` and its `--state` file are private: nothing planted beside them is followed or reused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from labelstudio_ingest.consumer.export import ExportState
from labelstudio_ingest.consumer.private_file import private_output


def _plant_victim(tmp_path: Path) -> Path:
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    return victim


def test_the_output_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    with private_output(out) as stream:
        stream.write('{"a": 1}\n')
    assert out.read_text() == '{"a": 1}\n'
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    victim = _plant_victim(tmp_path)
    out = tmp_path / "sft.jsonl"
    out.symlink_to(victim)
    with private_output(out) as stream:
        stream.write("exported\n")
    assert victim.read_text() == "keep me"
    assert not out.is_symlink()
    assert out.read_text() == "exported\n"


@pytest.mark.parametrize("planted", ["sft.jsonl.partial", ".sft.jsonl.partial", "sft.jsonl.tmp"])
def test_a_symlink_at_a_predictable_temporary_name_is_never_followed(tmp_path: Path, planted: str) -> None:
    victim = _plant_victim(tmp_path)
    (tmp_path / planted).symlink_to(victim)
    out = tmp_path / "sft.jsonl"
    with private_output(out) as stream:
        stream.write("exported\n")
    assert victim.read_text() == "keep me"
    assert (tmp_path / planted).is_symlink()
    assert out.read_text() == "exported\n"


def test_a_failed_export_leaves_the_old_output_and_no_temporary_file(tmp_path: Path) -> None:
    out = tmp_path / "sft.jsonl"
    out.write_text("previous\n")

    def fail_half_way() -> None:
        with private_output(out) as stream:
            stream.write("half")
            raise RuntimeError("Label Studio went away")

    with pytest.raises(RuntimeError):
        fail_half_way()
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["sft.jsonl"]


def test_the_state_file_is_private_and_never_written_through_a_planted_link(tmp_path: Path) -> None:
    victim = _plant_victim(tmp_path)
    state_path = tmp_path / "state.json"
    (tmp_path / "state.json.tmp").symlink_to(victim)
    state_path.symlink_to(victim)
    ExportState(project_id=7, format="sft").save(state_path)
    assert victim.read_text() == "keep me"
    assert not state_path.is_symlink()
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert ExportState.load(state_path, 7, "sft").project_id == 7
