"""gnuplot charts for the report: every chart is written twice, as SVG (for
the web view of the doc) and PNG (for anything that cannot show SVG).

Each function writes its data to a temporary file and runs one gnuplot
script; missing values (failed runs) are "?" and leave a gap.
"""
import os
import shutil
import subprocess
import tempfile

COLORS = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#ff7f0e",
          "mimalloc": "#2ca02c", "xmm": "#9467bd",
          # the metrics of the summary chart
          "time (workloads)": "#4c72b0", "peak RSS (workloads)": "#dd8452",
          "time (micro)": "#8c8c8c"}
TERMINALS = [("svg", "set terminal svg size {w},{h} dynamic font 'Sans,11' background '#ffffff'"),
             ("png", "set terminal pngcairo size {w},{h} font 'Sans,10'")]


def available():
    return shutil.which("gnuplot") is not None


def color(name):
    return COLORS.get(name, "#000000")


def _value(v):
    return "?" if v is None else f"{v:.6g}"


def _label(text):
    """A label safe inside a gnuplot data file column."""
    return '"' + text.replace('"', "'") + '"'


def _quote(text):
    """Text inside a single-quoted gnuplot string."""
    return text.replace("'", "")


def _render(base_path, body, width, height):
    """Runs the gnuplot `body` once per output format."""
    script = ["set encoding utf8", "set datafile missing '?'"]
    for extension, terminal in TERMINALS:
        script.append(terminal.format(w=width, h=height))
        # After `set terminal`, which resets it: names such as malloc_free
        # must not turn into subscripts.
        script.append("set termoption noenhanced")
        script.append(f"set output '{base_path}.{extension}'")
        script.append(body)
        script.append("unset output")
    with tempfile.NamedTemporaryFile("w", suffix=".gp", delete=False) as file:
        file.write("\n".join(script) + "\n")
    try:
        subprocess.run(["gnuplot", file.name], check=True, capture_output=True, text=True)
    except subprocess.CalledProcessError as problem:
        raise RuntimeError(f"gnuplot failed for {base_path}: {problem.stderr}") from problem
    finally:
        os.unlink(file.name)


def _data_file(lines):
    file = tempfile.NamedTemporaryFile("w", suffix=".dat", delete=False)
    file.write("\n".join(lines) + "\n")
    file.close()
    return file.name


def grouped_bars(base_path, title, ylabel, categories, series, log_scale=False,
                 reference_line=None, ymin=0.5):
    """Bars for each category (x), one per series (allocator), same colour
    per allocator in every chart. series: {name: [value per category]}."""
    names = list(series)
    rows = [" ".join([_label(c)] + [_value(series[n][i]) for n in names])
            for i, c in enumerate(categories)]
    data = _data_file(rows)
    plots = [f"'{data}' using {i + 2}:xtic(1) title '{n}' lc rgb '{color(n)}'"
             for i, n in enumerate(names)]
    body = "\n".join([
        f"set title '{_quote(title)}'",
        f"set ylabel '{ylabel}'",
        "set style data histogram", "set style histogram clustered gap 1",
        "set style fill solid 0.85 border -1", "set boxwidth 0.9",
        "set xtics rotate by -30", "set grid ytics",
        "set key outside right top vertical",
        "set logscale y" if log_scale else "unset logscale y",
        f"set yrange [{ymin}:*]" if log_scale else "set yrange [0:*]",
        f"set arrow 1 from graph 0, first {reference_line} to graph 1, first {reference_line} "
        "nohead dt 2 lc rgb '#000000'" if reference_line else "unset arrow 1",
        "plot " + ", ".join(plots),
    ])
    width = max(900, 250 + 9 * len(categories) * len(names))
    try:
        _render(base_path, body, width, 420)
    finally:
        os.unlink(data)


def allocator_panels(base_path, title, allocators, panels):
    """One chart per benchmark: side-by-side panels (e.g. time and peak
    RSS), a bar per allocator with whiskers from the fastest to the slowest
    repetition. panels: [(ylabel, {allocator: (median, min, max)})]."""
    data_files, bodies = [], []
    for index, (ylabel, values) in enumerate(panels):
        rows = []
        for position, name in enumerate(allocators):
            median, low, high = values.get(name, (None, None, None))
            rgb = int(color(name)[1:], 16)
            rows.append(f"{position} {_label(name)} {_value(median)} {_value(low)} "
                        f"{_value(high)} {rgb}")
        data = _data_file(rows)
        data_files.append(data)
        bodies.append("\n".join([
            f"set ylabel '{ylabel}'", "set yrange [0:*]", "set grid ytics",
            "set style fill solid 0.85 border -1", "unset key",
            f"set xrange [-0.6:{len(allocators) - 0.4}]",
            f"plot '{data}' using 1:3:(0.7):6:xtic(2) notitle with boxes lc rgb variable, "
            # Whiskers from the fastest to the slowest repetition.
            f"'' using 1:4:(0):($5-$4) notitle with vectors nohead lc rgb '#000000' lw 1.5",
        ]))
    body = "\n".join([f"set multiplot layout 1,{len(panels)} title '{_quote(title)}'"]
                     + bodies + ["unset multiplot"])
    try:
        _render(base_path, body, 420 * len(panels), 330)
    finally:
        for data in data_files:
            os.unlink(data)


def lines_over_time(base_path, title, xlabel, ylabel, series):
    """One line per allocator. series: {name: [(x, y), ...]}."""
    data_files, plots = [], []
    for name, points in series.items():
        data = _data_file([f"{x:.6g} {y:.6g}" for x, y in points])
        data_files.append(data)
        plots.append(f"'{data}' using 1:2 with linespoints title '{name}' "
                     f"lc rgb '{color(name)}' lw 2 pt 7 ps 0.5")
    body = "\n".join([
        f"set title '{_quote(title)}'", f"set xlabel '{xlabel}'",
        f"set ylabel '{ylabel}'", "set grid", "set yrange [0:*]",
        "set key outside right top vertical", "plot " + ", ".join(plots)])
    try:
        _render(base_path, body, 900, 420)
    finally:
        for data in data_files:
            os.unlink(data)
