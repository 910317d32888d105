"""docs/results.md is generated from the result files, and kept in step with them."""
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_results_page_matches_the_result_files():
    proc = subprocess.run([sys.executable, "bench/report.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_hand_edited_figure_is_caught(tmp_path):
    report = load_report()
    readme = (ROOT / "docs" / "results.md").read_text()
    block = readme.split(report.BEGIN, 1)[1].split(report.END, 1)[0]
    assert "| `pcl` |" in block  # the demo table is in the generated block
    edited = tmp_path / "results.md"
    edited.write_text(readme.replace(block, block.replace("| `pcl` |", "| `pcl` | 0.999 |", 1)))
    proc = subprocess.run([sys.executable, "bench/report.py", "--check", "--page", str(edited)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1 and "python bench/report.py" in proc.stdout
    subprocess.run([sys.executable, "bench/report.py", "--page", str(edited)], cwd=ROOT, check=True,
                   capture_output=True)
    assert edited.read_text() == readme  # regenerating restores exactly what the files say


def test_missing_result_files_leave_their_blocks_out(tmp_path, monkeypatch):
    report = load_report()
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    assert report.render() == f"{report.BEGIN}\n\n{report.END}"


def test_every_block_names_its_date_machine_and_command():
    report = load_report()
    for block in report.render().split("\n### ")[1:]:
        assert "`python" in block, block[:200]  # each block quotes the command that produced it
