"""Output writers: PNG grids, metrics.jsonl and perf.jsonl (truncated on resume), the progress line."""

import io
import json

import numpy as np
from PIL import Image

from experiments import images, writers


def test_grid_layout_and_pixels(tmp_path):
    batch = np.zeros((3, 2, 2, 1), np.float32)
    batch[1] = 1.0
    grid = images.save_grid(tmp_path / "g.png", batch, columns=2)
    # 2 columns x 2 rows of 2x2 images with 2 px of white padding around and between.
    assert grid.shape == (2 + 2 * 4, 2 + 2 * 4, 1)
    assert grid[2:4, 2:4, 0].tolist() == [[0, 0], [0, 0]]  # image 0: black
    assert grid[2:4, 6:8, 0].tolist() == [[255, 255], [255, 255]]  # image 1: white
    assert grid[6:8, 2:4, 0].tolist() == [[0, 0], [0, 0]]  # image 2
    png = np.asarray(Image.open(tmp_path / "g.png"))
    np.testing.assert_array_equal(png, grid[..., 0])


def test_grid_clips_out_of_range_values():
    grid = images.grid_image(np.full((1, 1, 1, 3), 2.0), padding=0)
    assert grid.tolist() == [[[255, 255, 255]]]


def test_truncate_metrics_keeps_steps_up_to_the_checkpoint(tmp_path):
    path = tmp_path / writers.METRICS_FILE
    lines = [json.dumps({"step": s, "loss": s / 10}) for s in (10, 20, 30)]
    path.write_text("\n".join(lines) + '\n{"step": 40, "lo')  # the last line cut off by a kill
    writers.truncate_metrics(path, 20)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20]


def test_metric_writer_appends_json_lines_and_tensorboard_events(tmp_path):
    writer = writers.MetricWriter(tmp_path, resume_step=0)
    writer.write(5, {"loss": np.float32(0.5), "vector": np.arange(2)})
    writer.close()
    assert writers.read_metrics(tmp_path) == [{"step": 5, "loss": 0.5, "vector": [0, 1]}]
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_timings_go_to_perf_jsonl_and_both_files_are_truncated_on_resume(tmp_path):
    writer = writers.MetricWriter(tmp_path, resume_step=0)
    for step in (10, 20):
        writer.write(step, {"loss": step / 10, "perf/steps_per_sec": 3.5})
    writer.write(20, {"eval/loss": 1.0})
    writer.close()
    assert writers.read_metrics(tmp_path) == [
        {"step": 10, "loss": 1.0},
        {"step": 20, "loss": 2.0},
        {"step": 20, "eval/loss": 1.0},
    ]
    perf = writers.read_metrics(tmp_path, writers.PERF_FILE)
    assert perf == [
        {"step": 10, "perf/steps_per_sec": 3.5},
        {"step": 20, "perf/steps_per_sec": 3.5},
    ]
    writers.MetricWriter(tmp_path, resume_step=10).close()
    assert [r["step"] for r in writers.read_metrics(tmp_path)] == [10]
    assert [r["step"] for r in writers.read_metrics(tmp_path, writers.PERF_FILE)] == [10]


def test_progress_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    progress = writers.Progress(0, 100, stream=stream)
    progress.update(10)  # not forced: nothing on a non-terminal
    progress.update(50, "loss 1.0", force=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "50/100" in lines[0] and "steps/s" in lines[0] and "ETA" in lines[0]
    assert lines[0].endswith("loss 1.0")
