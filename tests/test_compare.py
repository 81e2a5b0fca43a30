"""compare_runs groups repeats (runs that differ only in seed and/or data.fold) into one row of
mean ± std; checked against numpy's mean and sample std of hand-written metrics.json runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnlab.compare import Run, Stat, bars, find_runs, plot, table, to_csv, to_markdown
from cnnlab.config import PROJECT_ROOT
from cnnlab.errors import CnnlabError

from .conftest import subprocess_env

# test/acc of a dropout sweep crossed with 3 seeds (made up; not ordered by seed or dropout)
ACC = {0.0: [0.881, 0.874, 0.879], 0.25: [0.889, 0.884, 0.892], 0.5: [0.861, 0.870, 0.858]}


def write_run(folder: Path, overrides: list[str], **metrics) -> Path:
    folder.mkdir(parents=True)
    record = {"status": "completed", "trainable_params": 61706, "epochs": 3, "overrides": overrides}
    (folder / "metrics.json").write_text(json.dumps({**record, **metrics}))
    return folder


@pytest.fixture
def dropout_x_seeds(tmp_path) -> Path:
    root = tmp_path / "sweep"
    for d, accs in ACC.items():
        for seed, acc in enumerate(accs):
            write_run(
                root / f"data=fashion_mnist,model.dropout={d},seed={seed}",
                ["data=fashion_mnist", f"model.dropout={d}", f"seed={seed}"],
                **{"test/acc": acc, "test/loss": 1 - acc, "val/acc": acc - 0.01},
                wall_time_s=10.0 + seed,
            )
    return root


def _expected(values):
    return np.mean(values), np.std(values, ddof=1)  # the sample standard deviation


def test_a_dropout_sweep_times_three_seeds_gives_one_row_per_dropout(dropout_x_seeds):
    header, rows = table(find_runs([dropout_x_seeds]), [dropout_x_seeds])
    assert header[:2] == ["model.dropout", "n"] and "seed" not in header
    by_dropout = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert list(by_dropout) == ["0.25", "0.0", "0.5"]  # best mean test/acc first
    for d, accs in ACC.items():
        row = by_dropout[str(d)]
        assert row["n"] == 3 and row["status"] == "completed"
        for column, values in (("test/acc", accs), ("test/loss", [1 - a for a in accs])):
            mean, std = _expected(values)
            assert row[column].mean == pytest.approx(mean, abs=1e-12)
            assert row[column].std == pytest.approx(std, abs=1e-12)
        assert row["params"] == 61706 and row["epochs"] == 3  # the same in every run
        assert row["wall_s"].mean == pytest.approx(11.0)  # differs: mean ± std
        assert row["val/acc_best"] is None  # no run has it
    mean, std = _expected(ACC[0.25])
    line = to_markdown(header, rows).splitlines()[2]
    assert line.startswith(
        f"| 0.25 | 3 | {mean - 0.01:.4f} ± {std:.4f} |  | {mean:.4f} ± {std:.4f} |"
    )
    assert "| 61,706 | 3 | 11.0 ± 1.0 | completed |" in line


def test_per_run_lists_every_run_with_its_seed(dropout_x_seeds):
    header, rows = table(find_runs([dropout_x_seeds]), group=False)
    assert header[:2] == ["model.dropout", "seed"] and "n" not in header and len(rows) == 9
    assert rows[0][header.index("test/acc")] == max(max(a) for a in ACC.values())


def test_runs_on_their_own_still_show_as_before(tmp_path):
    for d in (0.0, 0.5):  # one run per setting: nothing to group
        write_run(
            tmp_path / str(d), [f"model.dropout={d}", f"seed={int(d * 10)}"], **{"test/acc": d}
        )
    header, rows = table(find_runs([tmp_path]))
    assert header[:2] == ["model.dropout", "seed"] and "n" not in header
    assert [r[header.index("test/acc")] for r in rows] == [0.5, 0.0]  # plain numbers


def test_folds_and_seeds_group_and_failed_repeats_are_counted(tmp_path):
    accs = {(0, 0): 0.80, (0, 1): 0.84, (1, 0): 0.83, (1, 1): 0.85}
    for (seed, fold), acc in accs.items():
        write_run(
            tmp_path / "kfold" / f"{seed}-{fold}",
            ["data.folds=2", f"data.fold={fold}", f"seed={seed}"],
            **{"test/acc": acc},
        )
    write_run(
        tmp_path / "kfold" / "2-0",
        ["data.folds=2", "data.fold=0", "seed=2"],
        status="failed",
        error="TrainingDiverged: the loss became nan",
        epochs=None,
    )
    header, rows = table(find_runs([tmp_path]), [tmp_path])
    (row,) = rows  # one experiment: the common folder names it
    cells = dict(zip(header, row, strict=True))
    assert cells["run"] == "kfold" and cells["n"] == 5
    mean, std = _expected(list(accs.values()))
    assert (cells["test/acc"].mean, cells["test/acc"].std) == pytest.approx((mean, std))
    assert f"{cells['test/acc']:.4f}" == f"{mean:.4f} ± {std:.4f} (n=4)"  # 4 of the 5 ran
    assert cells["status"] == "4 completed, 1 failed: TrainingDiverged: the loss became nan"
    assert cells["epochs"] == 3  # what every run that has a count shares


def test_csv_puts_the_std_beside_the_mean(dropout_x_seeds, tmp_path):
    header, rows = table(find_runs([dropout_x_seeds]))
    with open(to_csv(header, rows, tmp_path / "t.csv")) as f:
        written = {r["model.dropout"]: r for r in csv.DictReader(f)}
    mean, std = _expected(ACC[0.5])
    assert float(written["0.5"]["test/acc"]) == pytest.approx(mean)
    assert float(written["0.5"]["test/acc std"]) == pytest.approx(std)
    assert written["0.5"]["n"] == "3" and written["0.5"]["params"] == "61706"


def test_bars_are_the_rows_in_swept_order_with_mean_and_sample_std(dropout_x_seeds):
    b = bars(find_runs([dropout_x_seeds]))
    order = sorted(ACC)
    assert b.labels == [f"dropout={d} (n=3)" for d in order]
    assert b.values == pytest.approx([_expected(ACC[d])[0] for d in order], abs=1e-12)
    assert b.errors == pytest.approx([_expected(ACC[d])[1] for d in order], abs=1e-12)
    assert (b.colour_by, b.colours) == ("model.dropout", [str(d) for d in order])
    assert (b.metric, b.title) == ("test/acc", "test/acc: mean ± std over seeds/folds")
    val = bars(find_runs([dropout_x_seeds]), "val/acc")
    assert val.values == pytest.approx([_expected(ACC[d])[0] - 0.01 for d in order], abs=1e-12)
    apart = bars(find_runs([dropout_x_seeds]), group=False)  # a bar per run, seeds shown
    assert apart.labels[:2] == ["dropout=0.0, seed=0", "dropout=0.0, seed=1"]
    assert apart.values[:2] == [ACC[0.0][0], ACC[0.0][1]] and apart.errors[:2] == [0.0, 0.0]
    assert apart.title == "test/acc per run"


def test_bars_of_two_swept_keys_sort_by_both_and_colour_by_the_first():
    def run(name, lr, bn, seed, **metrics):
        overrides = [f"optimizer.lr={lr}", f"model.batch_norm={bn}", f"seed={seed}"]
        return Run(Path(name), {"overrides": overrides, **metrics})

    runs = [  # written in no particular order; two repeats, one single run, one failed repeat
        run("a", 0.1, "true", 0, **{"test/acc": 0.8}),
        run("b", 0.01, "true", 0, **{"test/acc": 0.6}),
        run("c", 0.1, "true", 1, **{"test/acc": 0.9}),
        run("d", 0.01, "false", 0, **{"test/acc": 0.7}),
        run("e", 0.01, "true", 1, status="failed"),
    ]
    b = bars(runs)
    assert b.labels == [  # a single run shows its seed, as in the table
        "lr=0.01, batch_norm=false, seed=0",
        "lr=0.01, batch_norm=true (n=2)",
        "lr=0.1, batch_norm=true (n=2)",
    ]
    assert b.values == pytest.approx([0.7, 0.6, 0.85])
    # one value out of two runs has no spread to show; two have their sample std
    assert b.errors == pytest.approx([0.0, 0.0, np.std([0.8, 0.9], ddof=1)])
    assert (b.colour_by, b.colours) == ("optimizer.lr", ["0.01", "0.01", "0.1"])
    assert b.title == "test/acc: mean ± std over seeds/folds"


def test_bars_of_runs_without_swept_keys_are_named_by_their_folders_and_need_the_metric():
    runs = [
        Run(Path("sweep/first"), {"test/acc": 0.5}),
        Run(Path("sweep/second"), {"test/acc": 0.75}),
        Run(Path("sweep/crashed"), {"status": "failed"}),  # no test/acc: no bar
    ]
    b = bars(runs, group=False)
    assert b.labels == ["first", "second"] and b.values == [0.5, 0.75]
    assert (b.colour_by, b.colours, b.errors) == (None, ["", ""], [0.0, 0.0])
    swept = [*runs, Run(Path("sweep/third"), {"test/acc": 0.6, "overrides": ["seed=3"]})]
    b = bars(swept, group=False)  # the first swept key colours the bars
    assert b.labels == ["first", "second", "seed=3"] and b.values == [0.5, 0.75, 0.6]
    assert (b.colour_by, b.colours) == ("seed", ["", "", "3"])
    with pytest.raises(CnnlabError, match=r"^No run has val/acc; nothing to plot\.$"):
        bars(runs, "val/acc")


def test_plot_draws_means_with_std_error_bars(dropout_x_seeds, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer

    captured = {}
    real_savefig = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        captured["fig"] = fig
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep)
    assert plot(find_runs([dropout_x_seeds]), tmp_path / "p.png").stat().st_size > 1000
    (ax,) = captured["fig"].axes
    (bars,) = [c for c in ax.containers if isinstance(c, BarContainer)]
    order = sorted(ACC)  # bars in order of the swept value
    heights = [b.get_height() for b in bars]
    assert heights == pytest.approx([np.mean(ACC[d]) for d in order])
    segments = bars.errorbar.lines[2][0].get_segments()
    for seg, d in zip(segments, order, strict=True):
        mean, std = _expected(ACC[d])
        assert (seg[0][1], seg[1][1]) == pytest.approx((mean - std, mean + std))
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"dropout={d} (n=3)" for d in order]


def test_the_script_prints_mean_and_std(dropout_x_seeds):
    script = str(PROJECT_ROOT / "scripts" / "compare_runs.py")
    out = subprocess.run(
        [sys.executable, script, str(dropout_x_seeds)],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("| model.dropout | n | val/acc |") and len(lines) == 5
    mean, std = _expected(ACC[0.0])
    assert "| 0.0 | 3 |" in lines[3] and f"{mean:.4f} ± {std:.4f}" in lines[3]
    per_run = subprocess.run(
        [sys.executable, script, str(dropout_x_seeds), "per_run=true"],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )  # fmt: skip
    assert len(per_run.stdout.splitlines()) == 11  # header, rule, 9 runs


def test_stat_formats_a_lone_value_without_a_std():
    assert f"{Stat(0.5, None, 1, 3):.2f}" == "0.50 (n=1)"


# -- run names, cells and files on their edges (each check fails on a one-token change) --------


def test_repeats_without_a_common_folder_are_named_without_their_seed(tmp_path):
    # sibling folders named by their overrides, as Hydra's sweep subdirs are: no common folder
    for seed in (0, 1):
        write_run(
            tmp_path / f"seed={seed},model.dropout=0.5", ["model.dropout=0.5", f"seed={seed}"]
        )
        write_run(
            tmp_path / f"model.dropout=0.0,seed={seed}", ["model.dropout=0.0", f"seed={seed}"]
        )
    header, rows = table(find_runs([tmp_path]), [tmp_path], with_path=True)
    assert header[:3] == ["run", "model.dropout", "n"]
    assert sorted(r[0] for r in rows) == ["model.dropout=0.0", "model.dropout=0.5"]


def test_a_lone_run_is_named_by_its_folder_under_the_root_or_its_full_path(tmp_path):
    a = write_run(tmp_path / "sweep" / "a", ["model.dropout=0.1"], **{"test/acc": 0.9})
    b = write_run(tmp_path / "elsewhere" / "b", ["model.dropout=0.1"], **{"test/acc": 0.8})
    # no swept value tells them apart: the run column names them
    header, rows = table(find_runs([a, b]), [tmp_path / "sweep"], group=False)
    assert header[0] == "run" and [r[0] for r in rows] == ["a", str(b)]
    # a root given as a metrics.json file stands for its folder; a run at a root is its name
    _, rows = table(find_runs([a / "metrics.json"]), [a / "metrics.json"], group=False)
    assert rows[0][0] == "a"


def test_a_key_a_run_did_not_set_is_a_blank_cell(tmp_path):
    write_run(tmp_path / "x", ["model.dropout=0.5", "optimizer.lr=0.1"], **{"test/acc": 0.7})
    write_run(tmp_path / "y", ["model.dropout=0.0"], **{"test/acc": 0.8})
    header, rows = table(find_runs([tmp_path]))
    lr = header.index("optimizer.lr")
    assert [r[lr] for r in rows] == ["", "0.1"]  # y first (better), without an lr


def test_repeats_that_agree_are_still_a_mean_with_std_zero(tmp_path):
    for seed in (0, 1):
        write_run(tmp_path / f"s{seed}", [f"seed={seed}"], **{"test/acc": 0.75})
    header, rows = table(find_runs([tmp_path]))
    cell = rows[0][header.index("test/acc")]
    assert isinstance(cell, Stat) and (cell.mean, cell.std, cell.n) == (0.75, 0.0, 2)


def test_runs_without_the_sort_metric_go_last_in_either_order(tmp_path):
    for name, acc in (("a", None), ("b", 0.6), ("c", 0.9), ("d", None)):
        extra = {} if acc is None else {"test/acc": acc}
        write_run(tmp_path / name, [f"model.dropout={name}"], **extra)
    runs = find_runs([tmp_path])
    for descending, first in ((True, ["c", "b"]), (False, ["b", "c"])):
        _, rows = table(runs, descending=descending)
        assert [r[0] for r in rows] == [*first, "a", "d"]  # the missing ones in found order


def test_markdown_escapes_bars_and_formats_every_column(tmp_path):
    write_run(
        tmp_path / "r", ["model.hidden=[1|2]"], status="failed", error="ValueError: a|b",
        **{"test/acc": 0.5, "test/loss": float("nan")}, wall_time_s=3.25,
    )  # fmt: skip
    write_run(tmp_path / "s", ["model.hidden=[3]"], **{"test/acc": 0.25})
    header, rows = table(find_runs([tmp_path]))
    lines = to_markdown(header, rows).splitlines()
    assert lines[1] == "|" + "---|" * len(header)
    assert lines[2].startswith("| [1\\|2] |  |  | 0.5000 | nan |")
    assert lines[2].endswith("| 61,706 | 3 | 3.2 | failed: ValueError: a\\|b |")


def test_csv_leaves_the_std_of_a_lone_run_blank_and_makes_its_folder(tmp_path):
    for seed, acc in ((0, 0.8), (1, 0.9)):
        write_run(tmp_path / f"g{seed}", ["model.dropout=0.5", f"seed={seed}"], **{"test/acc": acc})
    write_run(tmp_path / "lone", ["model.dropout=0.0", "seed=0"], **{"test/acc": 0.7})
    header, rows = table(find_runs([tmp_path]))
    path = to_csv(header, rows, tmp_path / "out" / "deeper" / "t.csv")
    raw = path.read_bytes()
    assert raw.count(b"\r\n") == 3 and b"\r\r\n" not in raw  # csv's own line ends, once
    with open(path, newline="") as f:
        written = list(csv.DictReader(f))
    assert [r["model.dropout"] for r in written] == ["0.5", "0.0"]
    assert float(written[0]["test/acc std"]) == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert written[1]["test/acc"] == "0.7" and written[1]["test/acc std"] == ""


def test_group_names_when_folder_names_say_nothing_but_the_seed(tmp_path):
    # Hydra's numbered multirun folders, and folders named by the seed alone
    for seed in (0, 1):
        write_run(tmp_path / "a" / str(seed), ["model.dropout=0.1", f"seed={seed}"])
        write_run(tmp_path / "b" / f"seed={seed}", ["model.dropout=0.2", f"seed={seed}"])
    _, rows = table(find_runs([tmp_path / "a", tmp_path / "b"]), [tmp_path / "a", tmp_path / "b"], with_path=True)  # fmt: skip
    assert sorted(r[0] for r in rows) == ["0", "seed=0"]  # the first run's name


def test_a_run_is_named_under_whichever_root_holds_it(tmp_path):
    a = write_run(tmp_path / "one" / "x", ["model.dropout=0.1"], **{"test/acc": 0.9})
    b = write_run(tmp_path / "two" / "y", ["model.dropout=0.1"], **{"test/acc": 0.8})
    _, rows = table(find_runs([a, b]), [tmp_path / "one", tmp_path / "two"], group=False)
    assert [r[0] for r in rows] == ["x", "y"]
    # repeats, one under a root and one not: no common folder, so the first one's name
    c = write_run(tmp_path / "three" / "z", ["model.dropout=0.1", "seed=1"])
    d = write_run(tmp_path / "one" / "w", ["model.dropout=0.1", "seed=2"])
    _, rows = table(find_runs([c, d]), [tmp_path / "one"], with_path=True)
    assert [r[0] for r in rows] == [str(c)]


def test_a_broken_record_shows_as_a_failed_run_and_a_missing_path_is_named(tmp_path):
    from cnnlab.errors import CnnlabError

    for name, text in (("broken", "{not json"), ("list", "[1, 2]")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(text)
    runs = {run.path.name: run for run in find_runs([tmp_path])}
    assert runs["broken"].status.startswith("failed: unreadable metrics.json: Expecting")
    assert runs["list"].status == "failed: metrics.json holds a list, not a run"
    with pytest.raises(CnnlabError, match=r"nowhere does not exist \(give run or sweep"):
        find_runs([tmp_path / "nowhere"])


def test_a_group_where_one_run_has_the_metric_shows_it_without_a_std(tmp_path):
    write_run(tmp_path / "ok", ["model.dropout=0.5", "seed=0"], **{"test/acc": 0.8})
    write_run(tmp_path / "failed", ["model.dropout=0.5", "seed=1"], status="failed", error="x")
    header, rows = table(find_runs([tmp_path]))
    cell = rows[0][header.index("test/acc")]
    assert (cell.mean, cell.std, cell.n, cell.of) == (0.8, None, 1, 2)
    assert f"{cell:.2f}" == "0.80 (n=1)"


def test_group_runs_groups_over_the_keys_it_is_given(tmp_path):
    from cnnlab.compare import group_runs

    for d in ("0.1", "0.2"):
        write_run(tmp_path / d, [f"model.dropout={d}", "optimizer.lr=0.1"])
    (group,) = group_runs(find_runs([tmp_path]), over=("model.dropout",))
    assert len(group.runs) == 2 and group.overrides == {"optimizer.lr": "0.1"}


def test_a_group_is_named_by_its_first_run_without_the_seed_and_only_the_seed(tmp_path):
    # sweep folders named by their overrides; no common folder, so the name without the seed
    for seed in (0, 1):
        write_run(tmp_path / f"seed={seed},opt=AX", ["model.dropout=0.1", f"seed={seed}"])
    _, rows = table(find_runs([tmp_path]), [tmp_path], with_path=True)
    assert [r[0] for r in rows] == ["opt=AX"]  # the comma dropped, the name's own X kept


def test_a_row_with_one_measured_repeat_gets_no_error_bar(tmp_path):
    write_run(tmp_path / "s0", ["model.dropout=0.1", "seed=0"], **{"test/acc": 0.8})
    write_run(tmp_path / "s1", ["model.dropout=0.1", "seed=1"])  # a repeat that has no result
    for seed in (0, 1):  # repeats that agree
        write_run(tmp_path / f"t{seed}", ["model.dropout=0.2", f"seed={seed}"], **{"test/acc": 0.7})
    b = bars(find_runs([tmp_path]))
    assert b.values == pytest.approx([0.8, 0.7]) and b.errors == [0.0, 0.0]


def test_the_sweep_figure_is_drawn_as_asked_and_written_at_100_dpi(tmp_path, monkeypatch):
    from PIL import Image

    from cnnlab.viz import figures

    for seed, acc in ((0, 0.8), (1, 0.9)):
        write_run(tmp_path / f"s{seed}", ["model.dropout=0.1", f"seed={seed}"], **{"test/acc": acc})
    drawn = []
    real = figures.sweep_figure
    monkeypatch.setattr(figures, "sweep_figure", lambda b: drawn.append(b) or real(b))
    path = plot(find_runs([tmp_path]), tmp_path / "apart.png", group=False)
    assert [len(b.labels) for b in drawn] == [2]  # a bar per run, not one per row
    assert Image.open(path).info["dpi"] == pytest.approx((100, 100), abs=0.5)


@pytest.mark.parametrize(
    "content,status",
    [
        (b"\x89PNG\r\n\x1a\n\xff\xfe binary", "failed: unreadable metrics.json: 'utf-8' codec"),
        (
            b'{"status": "completed", "test/acc": "0.9x"}',
            "failed: metrics.json has a str for test/acc",
        ),
        (b'{"status": "failed", "error": {"why": 1}}', "failed: metrics.json has a dict for error"),
        (b'{"status": ["completed"]}', "failed: metrics.json has a list for status"),
        (b'{"status": "completed", "overrides": 5}', "failed: metrics.json has overrides that are"),
        (b'{"status": "running", "pid": "12"}', "failed: metrics.json has a str for pid"),
    ],
)
def test_one_odd_record_is_one_row_of_the_table(tmp_path, content, status):
    write_run(tmp_path / "good", ["model.dropout=0.1"], **{"test/acc": 0.9})
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "metrics.json").write_bytes(content)
    runs = {run.path.name: run for run in find_runs([tmp_path])}
    assert runs["odd"].status.startswith(status)
    header, rows = table(list(runs.values()))
    text = to_markdown(header, rows)  # every cell can be shown
    assert len(rows) == 2 and rows[0][header.index("test/acc")] == 0.9 and status[:20] in text


def test_an_interrupted_run_continued_elsewhere_is_one_row(tmp_path):
    last = tmp_path / "a" / "checkpoints" / "last.ckpt"
    write_run(tmp_path / "a", ["seed=1"], status="interrupted", resume_from=str(last))
    write_run(tmp_path / "b", ["seed=1"], resumed_from=str(last), **{"test/acc": 0.9})
    write_run(tmp_path / "c", ["seed=2"], status="interrupted", resume_from=str(tmp_path / "x"))
    assert sorted(run.path.name for run in find_runs([tmp_path])) == ["b", "c"]
    assert sorted(run.path.name for run in find_runs([tmp_path / "a"])) == ["a"]  # alone: shown
