"""``make bench``'s picture (bench/plot.py): a PNG with a bar per scenario."""
from __future__ import annotations

from pathlib import Path

from twisted.trial import unittest

from bench import plot


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
