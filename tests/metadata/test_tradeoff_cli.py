"""harness tradeoff: runs the variants, writes reports/tradeoff.md and tradeoff.svg; bad input exits 2."""
from __future__ import annotations

import xml.dom.minidom

from harness.cli import main


def test_tradeoff_writes_table_and_plot(tmp_path, capsys):
    rc = main(["tradeoff", "bes-relay", "--metadata-only", "--only", "none", "padding-bucket",
               "--reports", str(tmp_path / "r"), "--captures", str(tmp_path / "c")])
    assert rc == 0
    text = (tmp_path / "r" / "tradeoff.md").read_text()
    assert "| `none` | 1.00 visible" in text and "`padding-bucket`" in text and "tradeoff.svg" in text
    svg = xml.dom.minidom.parse(str(tmp_path / "r" / "tradeoff.svg"))
    assert len(svg.getElementsByTagName("circle")) == 2


def test_tradeoff_rejects_unknown_variants_and_unrelayed_scenarios(tmp_path, capsys):
    assert main(["tradeoff", "--only", "nonsense", "--reports", str(tmp_path)]) == 2
    assert "unknown variant" in capsys.readouterr().err
    assert main(["tradeoff", "email-tls", "--reports", str(tmp_path)]) == 2
    assert "relayed scenario" in capsys.readouterr().err
    assert not (tmp_path / "tradeoff.md").exists()
