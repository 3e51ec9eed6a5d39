"""``make bench``'s picture (bench/plot.py): a PNG with a bar per scenario."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from twisted.trial import unittest

_spec = importlib.util.spec_from_file_location("bench_plot",
                                               Path(__file__).resolve().parent.parent / "bench" / "plot.py")
plot = sys.modules.setdefault("bench_plot", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(plot)  # registered first: its dataclasses look their module up


class PlotTests(unittest.TestCase):
    def test_png_of_throughput_and_latency(self):
        path = Path(self.mktemp()) / "bench.png"
        rows = [plot.ScenarioFigures("(1) keep-alive", 870.0, 17.0, 25.0, 32.0),
                plot.ScenarioFigures("(2) new connection", 226.0, 62.0, 110.0, 170.0),
                plot.ScenarioFigures("(3) not measured", 10.0, None, None, None)]
        plot.write_png(path, rows, "test")
        data = path.read_bytes()
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        import matplotlib.image
        height, width = matplotlib.image.imread(path).shape[:2]
        self.assertGreater(width, height)  # two panels side by side
