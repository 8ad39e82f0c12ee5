import json
from pathlib import Path

import pytest

from training.report_cli import report_parser, write_report


def test_report_flags_are_shared_and_outside_only_where_a_report_reads_it(tmp_path: Path) -> None:
    args = report_parser("doc", outside=True).parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "r")])
    assert (args.model, args.data, args.out) == (Path("model"), tmp_path, tmp_path / "r")
    assert args.outside == Path("../shared/data/outside")
    with pytest.raises(SystemExit):
        report_parser("doc").parse_args(["--outside", "x"])


def test_a_report_is_written_as_json_and_markdown_and_printed(tmp_path: Path, capsys) -> None:
    write_report(tmp_path / "new", "test_report", {"accuracy": 0.5}, "# Report\n")
    assert json.loads((tmp_path / "new" / "test_report.json").read_text()) == {"accuracy": 0.5}
    assert (tmp_path / "new" / "test_report.md").read_text() == "# Report\n"
    assert "# Report" in capsys.readouterr().out
