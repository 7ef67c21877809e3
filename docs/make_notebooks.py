"""Write the tutorials' notebooks (docs/tutorials/*.ipynb) from the cells below.

The notebooks are kept without outputs; ``mkdocs build`` executes them on a real kernel
(mkdocs-jupyter), so every tutorial on the site is a run of today's code on the demo pallet.
Edit the cells here and run ``python docs/make_notebooks.py``.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

# ruff: noqa: E501 - the cells' code is as wide as a notebook shows it

HERE = Path(__file__).parent / "tutorials"


def md(text: str) -> tuple[str, str]:
    return ("md", text)


def py(text: str) -> tuple[str, str]:
    return ("py", text)


SETUP = py(
    """\
# a fresh folder for this tutorial, and fitaas's demo pallet in it
import os
import tempfile

os.chdir(tempfile.mkdtemp(prefix="fitaas-tutorial-"))
import fitaas
from fitaas.inputs.example import write_example

write_example("demo")  # what `fitaas example demo` writes
sorted(os.listdir("demo"))"""
)

TUTORIALS = {
    "scan": [
        md(
            "# Scan a published likelihood\n\n"
            "ATLAS publishes its likelihoods on HEPData as a background-only workspace and "
            "a patchset: one patch per signal hypothesis. A *scan* computes the CLs "
            "hypothesis test (observed, and the expected band) of every signal point on "
            "every core you have, and keeps each result in a store, so that nothing is "
            "computed twice.\n\n"
            "This tutorial uses the demo pallet fitaas generates (`fitaas example demo`): 20 "
            "signal points of a two-channel search, in the same files as a published "
            "pallet. Give `fitaas.scan` a HEPData archive, a folder or an address instead; "
            "the rest is the same."
        ),
        SETUP,
        md(
            "## The scan\n\n"
            "`fitaas.scan` starts worker processes (one per core), compiles each model "
            "structure once and fits every point; the bar shows how far it is. The store "
            "keeps each result by its content: run the cell again and nothing is computed."
        ),
        py(
            "with fitaas.ScanBar() as bar:\n"
            "    result = fitaas.scan(\n"
            '        "demo/BkgOnly.json", "demo/patchset.json", store="store.sqlite", progress=bar\n'
            "    )\n"
            "print(result.work())\n"
            "result.counts()"
        ),
        md(
            "Each point carries its CLs, its expected band (-2σ ... +2σ), the signal masses "
            "from the patchset's labels, and a status: `ok`, `suspect` or `failed` (see "
            "[Fits you can trust](../trust.md))."
        ),
        py(
            'point = result["demo_700_0"]\n'
            "point.values, point.cls_obs, point.hypotest.cls_exp, point.status"
        ),
        md("The results as a table (pandas), or as the JSON the command line writes:"),
        py(
            "frame = result.to_pandas()\n"
            'frame[["patch", "m1", "m2", "cls_obs", "cls_exp_0", "status"]].head()'
        ),
        md(
            "## The exclusion\n\n"
            "The observed and expected exclusion contours at 95% CL in the plane of the two "
            "masses (interpolated in log CLs between the scanned points):"
        ),
        py("from fitaas.output import plots\n\nplots.exclusion(result, cls_map=True);"),
        md(
            "## Upper limits\n\n"
            "Asking for upper limits too reuses the stored hypothesis tests and computes "
            "only the limits:"
        ),
        py(
            'names = ["demo_500_0", "demo_700_0", "demo_900_0"]\n'
            "limits = fitaas.scan(\n"
            '    "demo", patches=names, kinds=("hypotest", "upper_limit"), store="store.sqlite"\n'
            ")\n"
            "print(limits.work())\n"
            "[(p.patch, round(p.upper_limit.obs, 3)) for p in limits]"
        ),
        py("plots.brazil(limits);"),
        md(
            "From the command line the same scan is `fitaas scan demo/BkgOnly.json "
            "demo/patchset.json`; `fitaas results results.json` prints the table and "
            "`fitaas plot results.json` draws the figures."
        ),
    ],
    "toys": [
        md(
            "# Pseudo-experiments\n\n"
            "Where the asymptotic formulas are doubtful (few events), CLs comes from toys. "
            "fitaas cuts each point's toys into blocks, spreads the blocks over the "
            "workers, stores each block, and merges them as pyhf's `ToyCalculator` would. "
            "Asking for more toys later computes only the new blocks."
        ),
        SETUP,
        py(
            'options = fitaas.InferenceOptions(calctype="toybased", ntoys=500, seed=1)\n'
            "with fitaas.ScanBar() as bar:\n"
            "    toys = fitaas.scan(\n"
            '        "demo", patches=["demo_700_200"], options=options, store="store.sqlite",\n'
            "        progress=bar,\n"
            "    )\n"
            'point = toys["demo_700_200"]\n'
            "point.cls_obs, point.hypotest.toys.cls_obs_error"
        ),
        md(
            "The Monte-Carlo uncertainty of the observed CLs comes with it. Twice the "
            "toys: only the new blocks are computed."
        ),
        py(
            'more_toys = fitaas.InferenceOptions(calctype="toybased", ntoys=1000, seed=1)\n'
            "more = fitaas.scan(\n"
            '    "demo", patches=["demo_700_200"], options=more_toys, store="store.sqlite"\n'
            ")\n"
            "print(more.work())\n"
            'summary = more["demo_700_200"].hypotest.toys\n'
            "summary.ntoys_sb, summary.cls_obs_error"
        ),
        md("The test statistic's distributions in both ensembles, and its observed value:"),
        py('from fitaas.output import plots\n\nplots.toy_distributions(more["demo_700_200"]);'),
    ],
    "theory-and-combinations": [
        md(
            "# Theory scans and combinations\n\n"
            "A *theory scan* streams models (a JSON Lines file, a folder, or any Python "
            'iterable of `{"name", "values", "patch"}`) through the workers and writes each '
            "result as it finishes; memory stays flat however many models there are. A "
            "*combination* fits several analyses' likelihoods as one."
        ),
        SETUP,
        md(
            "Here the models are demo signal points with their yields scaled, as a scan "
            "over a coupling would make them:"
        ),
        py(
            "import json\n\n"
            'patchset = json.load(open("demo/patchset.json"))\n\n\n'
            "def models():\n"
            "    for scale in (0.5, 1.0, 2.0):\n"
            '        for patch in patchset["patches"][:4]:\n'
            '            ops = json.loads(json.dumps(patch["patch"]))\n'
            "            for op in ops:\n"
            '                op["value"]["data"] = [x * scale for x in op["value"]["data"]]\n'
            '            name, (m1, m2) = patch["metadata"]["name"], patch["metadata"]["values"]\n'
            '            yield {"name": f"{name}_x{scale}", "values": [m1, m2, scale], "patch": ops}\n\n\n'
            "summary = fitaas.stream_scan(\n"
            '    "demo/BkgOnly.json", models(), labels=["m1", "m2", "scale"],\n'
            '    store="store.sqlite", output="theory.jsonl",\n'
            ")\n"
            "summary.models, summary.counts"
        ),
        py(
            'theory = fitaas.read_results("theory.jsonl")\n'
            'theory.to_pandas()[["patch", "m1", "m2", "scale", "cls_obs"]]'
        ),
        md(
            "## A combination\n\n"
            "The signal points of two analyses are combined by name, channel by channel "
            "(`fitaas combine` writes the combined workspace; `fitaas scan A B --combine` "
            "scans it). Here the second analysis is a copy of the demo with its channels "
            "renamed:"
        ),
        py(
            'workspace = open("demo/BkgOnly.json").read()\n'
            'patches = open("demo/patchset.json").read()\n'
            'for channel in json.loads(workspace)["channels"]:\n'
            '    name = channel["name"]\n'
            "    workspace = workspace.replace(f'\"{name}\"', f'\"B_{name}\"')\n"
            '    patches = patches.replace(f"/channels/{name}", f"/channels/B_{name}")\n'
            "from fitaas.inputs.digests import digest\n\n"
            "patches = json.loads(patches)  # (a patchset names its workspace by digest)\n"
            'patches["metadata"]["digests"] = {"sha256": digest(json.loads(workspace))}\n'
            'os.makedirs("b", exist_ok=True)\n'
            'open("b/BkgOnly.json", "w").write(workspace)\n'
            'open("b/patchset.json", "w").write(json.dumps(patches))\n\n'
            "from fitaas.jobs.combined_scans import combine_pallets\n"
            "from fitaas.jobs.sweeps import expand_pallets\n\n"
            'combined = combine_pallets(expand_pallets(["demo", "b"]), join="outer")\n'
            'names = ["demo_700_0", "demo_900_200"]\n'
            'both = fitaas.scan(combined.pallet, patches=names, store="store.sqlite")\n'
            'alone = fitaas.scan("demo", patches=names, store="store.sqlite")\n'
            "[(p.patch, round(a.cls_obs, 4), round(p.cls_obs, 4)) for p, a in zip(both, alone)]"
        ),
        md("Two analyses that see the same signal exclude it more strongly than one."),
    ],
    "fits": [
        md(
            "# The analyst's fits\n\n"
            "Beyond scans, the fits an analyst runs on one model: the impact ranking of the "
            "nuisance parameters, a likelihood scan of a parameter, and upper limits, each "
            "spread over the workers. The demo's data lie below its background, so the "
            "signal strength is let go below zero here (`par_bounds`), as an analyst would "
            "to see where the data pull it."
        ),
        SETUP,
        py(
            'pallet = fitaas.load_pallet("demo")\n'
            'options = fitaas.InferenceOptions(par_bounds={"mu_SIG": [-2.0, 10.0]})\n'
            'ranked = fitaas.ranking(pallet, patch="demo_700_0", options=options)\n'
            'print(f"{ranked.poi} = {ranked.poi_value:.3f} ± {ranked.poi_error:.3f}")\n'
            "[(i.parameter, round(i.prefit_up, 3), round(i.prefit_down, 3)) for i in ranked.impacts[:5]]"
        ),
        py("from fitaas.output import fit_plots\n\nfit_plots.ranking_figure(ranked);"),
        py(
            "scan = fitaas.likelihood_scan(\n"
            '    pallet, patch="demo_700_0", grid=(-0.5, 1.5, 9), options=options\n'
            ")\n"
            "scan.bestfit, scan.interval_1sigma"
        ),
        py("fit_plots.likelihood_scan_figure(scan);"),
        md("The upper limit on the signal strength, observed and expected (-2σ ... +2σ):"),
        py('limit = fitaas.upper_limit(pallet, patch="demo_700_0")\nlimit.obs, limit.exp'),
    ],
}


def main() -> None:
    """Write every tutorial notebook."""
    HERE.mkdir(exist_ok=True)
    for name, cells in TUTORIALS.items():
        made = [new_markdown_cell(t) if k == "md" else new_code_cell(t) for k, t in cells]
        for number, cell in enumerate(made):  # (ids that do not change from run to run)
            cell["id"] = f"{name}-{number}"
        notebook = new_notebook(
            cells=made,
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
        )
        nbformat.write(notebook, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
