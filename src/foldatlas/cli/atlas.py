"""``foldatlas atlas``: build, import, look up, export and search an atlas of structures."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from foldatlas.models.registry import DEFAULT_FOLD_MODEL, DEFAULT_LM
from foldatlas.cli.fold import (
    DTYPE_OPTION, NUM_LOOPS_OPTION, NUM_SAMPLES_OPTION, NUM_STEPS_OPTION, PRECISION_OPTION, SEED_OPTION, print_precision)

atlas_app = typer.Typer(no_args_is_help=True, help="A store of predicted and imported structures: build, import, "
                                                   "get, stats, export, search.")

ATLAS_OPTION = typer.Option(..., "--atlas", "-a", envvar="FOLDATLAS_ATLAS",
                            help="Atlas folder (or $FOLDATLAS_ATLAS).")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _embedding_model_name(atlas, name: Optional[str], enabled: bool) -> Optional[str]:
    """The atlas' embedding model (or the one named, or the embedded LM for a new atlas); None: no embeddings."""
    if not enabled:
        return None
    stored = atlas.get_meta("embedding_model") or {}
    return name or stored.get("load") or DEFAULT_LM


def _embedder(atlas, name: Optional[str], enabled: bool):
    """The loaded embedder of :func:`_embedding_model_name`, or None."""
    chosen = _embedding_model_name(atlas, name, enabled)
    if chosen is None:
        return None
    from foldatlas.models.embedding import load_embedder

    return load_embedder(chosen)


@atlas_app.command("build")
def build(
    inputs: list[str] = typer.Argument(..., help="FASTA files or raw sequences (':' between complex chains)."),
    atlas_dir: Path = ATLAS_OPTION,
    model: str = typer.Option(DEFAULT_FOLD_MODEL, "--model", "-m",
                              help="Folding model: registered name, hub id (local cache) or checkpoint folder."),
    embedding_model: Optional[str] = typer.Option(None, "--embedding-model",
                                                  help=f"Language model of the mean embeddings (default: the "
                                                       f"atlas' own, else {DEFAULT_LM})."),
    no_embed: bool = typer.Option(False, "--no-embed", help="Store no embeddings."),
    no_pae: bool = typer.Option(False, "--no-pae", help="Store no PAE matrices (saves about L^2/3 bytes each)."),
    relax: bool = typer.Option(False, "--relax", help="Store Amber-relaxed models (needs foldatlas[relax])."),
    num_recycles: Optional[int] = typer.Option(None, "--num-recycles", min=0, max=24,  # engine.MAX_RECYCLES
                                               help="ESMFold v1: recycles after the first pass (default: the "
                                                    "model's own)."),
    num_samples: Optional[int] = NUM_SAMPLES_OPTION,
    seed: Optional[int] = SEED_OPTION,
    num_steps: Optional[int] = NUM_STEPS_OPTION,
    num_loops: Optional[int] = NUM_LOOPS_OPTION,
    chunk_size: Optional[int] = typer.Option(None, "--chunk-size", min=0),
    max_tokens_per_batch: int = typer.Option(1024, "--max-tokens-per-batch", min=0),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1,
                                             help="Skip longer records (default: what fits in memory)."),
    device: str = typer.Option("auto", "--device"),
    precision: str = PRECISION_OPTION,
    dtype: Optional[str] = DTYPE_OPTION,
    threads: Optional[int] = typer.Option(None, "--threads", min=1),
    name: str = typer.Option("query", "--name", help="ID of a raw sequence."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ray: Optional[str] = typer.Option(None, "--ray", help="Build on Ray: 'local' (a cluster on this machine), "
                                      "'auto' (the running cluster) or an address (ray://host:10001)."),
    ray_workers: int = typer.Option(2, "--ray-workers", min=1, help="Model replicas (Ray actors)."),
    ray_cpus: int = typer.Option(1, "--ray-cpus-per-worker", min=1, help="CPU threads per replica."),
    ray_gpus: float = typer.Option(0.0, "--ray-gpus-per-worker", min=0.0, help="GPUs per replica (1: one per GPU)."),
) -> None:
    """Fold sequences into the atlas: deduplicated by sequence, resumable (rerun the same command)."""
    from foldatlas.atlas import BuildOptions, build_atlas, open_atlas
    from foldatlas.seq.fasta import read_inputs

    from foldatlas.files import check_output_path
    from foldatlas.models.loading import check_device_options, check_fold_options
    from foldatlas.predict.runner import fold_options

    # Everything is checked before a model loads or the atlas folder is created: a refused command leaves nothing.
    records = read_inputs(inputs, default_name=name)
    options = BuildOptions(num_recycles=num_recycles, chunk_size=chunk_size, max_tokens_per_batch=max_tokens_per_batch,
                           max_length=max_length, store_pae=not no_pae, source=" ".join(inputs)[:500], relax=relax,
                           num_samples=num_samples, seed=seed, num_steps=num_steps, num_loops=num_loops)
    check_output_path(atlas_dir, "--atlas", folder=True)
    check_device_options(device, dtype, precision)
    check_fold_options(model, fold_options(options))
    if ray is not None:
        from foldatlas.scale.ray_build import RayOptions, build_atlas_ray, ray_cluster

        ray_options = RayOptions(address=ray, workers=ray_workers, cpus_per_worker=ray_cpus, gpus_per_worker=ray_gpus)
        with ray_cluster(ray_options), open_atlas(atlas_dir, create=True) as atlas:
            result = build_atlas_ray(atlas, records, model, _embedding_model_name(atlas, embedding_model, not no_embed),
                                     options, ray_options, device=device, dtype=dtype, precision=precision,
                                     progress=not quiet, log=_log)
            total = len(atlas)
    else:
        from foldatlas.models.loading import load_folding_model

        folding_model = load_folding_model(model, device=device, dtype=dtype, threads=threads, precision=precision)
        if folding_model.name == DEFAULT_FOLD_MODEL and folding_model.source == "package":
            from foldatlas.cli.fold import DEFAULT_MODEL_NOTICE

            _log(DEFAULT_MODEL_NOTICE)
        if folding_model.precision_note:
            _log(f"note: {folding_model.precision_note}")
        print_precision(folding_model, precision, dtype, log=_log)
        with open_atlas(atlas_dir, create=True) as atlas:
            result = build_atlas(atlas, records, folding_model, _embedder(atlas, embedding_model, not no_embed),
                                 options, progress=not quiet, log=_log)
            total = len(atlas)
    where = " on Ray" if ray is not None else ""
    _log(f"{result.folded} folded{where}, {result.deduplicated} stored as aliases of identical sequences, "
         f"{result.skipped} already in the atlas, {result.failed} failed -> {atlas_dir}/ ({total} entries)")
    if not result.ok:
        raise typer.Exit(1)


@atlas_app.command("import")
def import_(
    paths: list[Path] = typer.Argument(..., help="Structure files or folders (PDB/mmCIF, gzipped too)."),
    atlas_dir: Path = ATLAS_OPTION,
    plddt: str = typer.Option("auto", "--plddt", help="Read B-factors as pLDDT: auto (when the file comes from a "
                                                      "predictor), bfactor (always) or none."),
    split_chains: bool = typer.Option(False, "--split-chains", help="One entry per chain (ID_chain)."),
    chains: Optional[str] = typer.Option(None, "--chains", help="Chains to keep, e.g. A or A,B."),
    label: Optional[str] = typer.Option(None, "--label", help="What made the structures (default: detected)."),
    embedding_model: Optional[str] = typer.Option(None, "--embedding-model"),
    no_embed: bool = typer.Option(False, "--no-embed", help="Store no embeddings."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Processes reading files (default for 64 files or more: half "
                                               "the CPUs, all of them with --no-embed; 0 = none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Import structure files (e.g. AlphaFold DB or PDB downloads) as atlas entries."""
    import os

    from foldatlas.atlas import ImportOptions, import_structures, open_atlas
    from foldatlas.atlas.importer import find_structure_files

    from foldatlas.files import check_output_path

    files = find_structure_files(paths)  # a clear error before the atlas is created
    check_output_path(atlas_dir, "--atlas", folder=True)
    if workers is None:
        cpus = len(os.sched_getaffinity(0))  # without embeddings the main process only stores
        workers = (cpus if no_embed else max(1, cpus // 2)) if len(files) >= 64 else 0
    options = ImportOptions(plddt=plddt, split_chains=split_chains, chains=chains, label=label, workers=workers)
    with open_atlas(atlas_dir, create=True) as atlas:
        result = import_structures(atlas, paths, _embedder(atlas, embedding_model, not no_embed), options,
                                   progress=not quiet, log=_log)
        total = len(atlas)
    _log(f"{result.imported} imported, {result.skipped} already in the atlas, {result.failed} failed "
         f"-> {atlas_dir}/ ({total} entries)")
    if not result.ok:
        raise typer.Exit(1)


_FORMATS = ("pdb", "cif", "bcif", "json", "pae", "fasta")


@atlas_app.command("get")
def get(
    entry_id: str = typer.Argument(..., help="Entry ID, alias, or sequence MD5."),
    atlas_dir: Path = ATLAS_OPTION,
    fmt: str = typer.Option("pdb", "--format", "-f", help=f"One of {', '.join(_FORMATS)}."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to a file (default: stdout)."),
) -> None:
    """Print or write one entry: structure (PDB, mmCIF, BinaryCIF), JSON, PAE JSON or FASTA."""
    from foldatlas.atlas import open_atlas
    from foldatlas.errors import InvalidOptionError
    from foldatlas.files import atomic_write_bytes
    from foldatlas.seq.fasta import fasta_header

    if fmt not in _FORMATS:
        raise InvalidOptionError(f"--format must be one of {', '.join(_FORMATS)}, not {fmt!r}")
    if fmt == "bcif" and output is None:
        raise InvalidOptionError("--format bcif is binary: give --output FILE")
    if output is not None:
        from foldatlas.files import check_output_path

        check_output_path(output, "--output")
    with open_atlas(atlas_dir, readonly=True) as atlas:
        entry = atlas.get(entry_id, pae=fmt in ("json", "pae"), embedding=fmt == "json")
    if fmt == "pae" and not entry.has_pae:
        raise InvalidOptionError(f"entry '{entry.id}' has no PAE (imported, or built with --no-pae)")
    data: bytes
    if fmt == "bcif":
        data = entry.to_bcif()
    else:
        text = {"pdb": entry.to_pdb, "cif": entry.to_mmcif,
                "json": lambda: json.dumps(entry.to_dict(include_pae=True, include_embedding=True,
                                                         include_geometry=True)),
                "pae": lambda: json.dumps(entry.pae_json(), separators=(",", ":")),
                "fasta": lambda: f"{fasta_header(entry.id, entry.description)}\n{entry.sequence}\n"}[fmt]()
        data = text.encode() if text.endswith("\n") else (text + "\n").encode()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        atomic_write_bytes(output, data)


@atlas_app.command("stats")
def stats(
    atlas_dir: Path = ATLAS_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    failures: bool = typer.Option(False, "--failures", help="Also list the failed records and why."),
) -> None:
    """Entries, aliases, failures, confidence bands, models and disk use."""
    from foldatlas.atlas import open_atlas

    with open_atlas(atlas_dir, readonly=True) as atlas:
        info = atlas.stats()
        if failures:
            info["failed_records"] = atlas.failures()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        if isinstance(value, (dict, list)):
            typer.echo(f"{key}:")
            for item in (value.items() if isinstance(value, dict) else enumerate(value)):
                typer.echo(f"  {item[0] if isinstance(value, dict) else '-'} {item[1]}")
        else:
            typer.echo(f"{key:<16}{value}")


@atlas_app.command("export")
def export(
    atlas_dir: Path = ATLAS_OPTION,
    fasta: Optional[Path] = typer.Option(None, "--fasta", help="Write every sequence as FASTA."),
    metadata: Optional[Path] = typer.Option(None, "--metadata", help="Write ESM Atlas-style metadata (.parquet)."),
    structures: Optional[Path] = typer.Option(None, "--structures",
                                              help="Folder for structure tarballs binned by pTM and pLDDT."),
    structure_format: str = typer.Option("pdb", "--structure-format", help="pdb or cif."),
    bin_width: float = typer.Option(0.1, "--bin-width", help="Confidence bin width (0-1 scale)."),
    clusters: Optional[Path] = typer.Option(None, "--clusters", help="Write a clustering's table: .tsv (MMseqs2's "
                                                                      "rep/member pairs) or .parquet (AFDB-style)."),
    clustering: Optional[str] = typer.Option(None, "--clustering", help="Which clustering (default: the only one)."),
) -> None:
    """Export sequences (FASTA), metadata (Parquet), structures (tarballs by confidence) and clusters."""
    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.export import export_clusters, export_fasta, export_metadata, export_structures
    from foldatlas.errors import InvalidOptionError
    from foldatlas.files import check_output_path

    if not (fasta or metadata or structures or clusters):
        raise InvalidOptionError("nothing to export: give --fasta, --metadata, --structures and/or --clusters")
    if structure_format not in ("pdb", "cif"):
        raise InvalidOptionError(f"--structure-format must be pdb or cif, not {structure_format!r}")
    if not 0 < bin_width <= 1:
        raise InvalidOptionError(f"--bin-width must be in (0, 1], not {bin_width}")
    suffixes = {"--metadata": (".parquet",), "--clusters": (".tsv", ".parquet")}
    for path, option in ((fasta, "--fasta"), (metadata, "--metadata"), (clusters, "--clusters")):
        if path is not None:
            check_output_path(path, option, suffixes=suffixes.get(option, ()))
    if structures is not None:
        check_output_path(structures, "--structures", folder=True)
    with open_atlas(atlas_dir, readonly=True) as atlas:
        if fasta:
            _log(f"{export_fasta(atlas, fasta)} sequences -> {fasta}")
        if metadata:
            _log(f"{export_metadata(atlas, metadata)} rows -> {metadata}")
        if structures:
            counts = export_structures(atlas, structures, fmt=structure_format, width=bin_width)
            _log(f"{sum(counts.values())} structures in {len(counts)} tarballs -> {structures}/")
        if clusters:
            _log(f"{export_clusters(atlas, clusters, clustering)} cluster members -> {clusters}")


@atlas_app.command("cluster")
def cluster(
    atlas_dir: Path = ATLAS_OPTION,
    by: str = typer.Option("sequence", "--by", help="sequence (identity and coverage, as MMseqs2 easy-linclust) or "
                                                     "structure (TM-score and coverage, as Foldseek cluster)."),
    min_identity: float = typer.Option(0.3, "--min-identity", help="Sequence: identity at least this (0-1)."),
    coverage: float = typer.Option(0.8, "--coverage", "-c", help="Aligned fraction of both entries (0-1)."),
    min_tm: float = typer.Option(0.5, "--min-tm", help="Structure: TM-score at least this (0-1)."),
    min_plddt: Optional[float] = typer.Option(None, "--min-plddt", help="Leave out entries with mean pLDDT below "
                                                                         "this (0-100)."),
    min_ptm: Optional[float] = typer.Option(None, "--min-ptm", help="Leave out entries with pTM below this (0-1)."),
    kmers_per_entry: int = typer.Option(21, "--kmers-per-entry", help="k-mers kept per entry (more: more distant "
                                                                       "members found, slower)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Alignment threads (default: all CPUs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the clustering's summary as JSON."),
) -> None:
    """Cluster the atlas (greedy set cover, longest entries first, linear-time k-mer candidates), stored in the
    atlas under a name from the thresholds; a later run adds only the entries imported or built since."""
    from foldatlas.atlas import open_atlas
    from foldatlas.atlas.cluster import ClusterOptions, cluster_atlas

    options = ClusterOptions(by=by, min_identity=min_identity, coverage=coverage, min_tm=min_tm, min_plddt=min_plddt,
                             min_ptm=min_ptm, kmers_per_entry=kmers_per_entry, threads=threads)
    with open_atlas(atlas_dir) as atlas:
        info = cluster_atlas(atlas, options)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"{info['name']}: {info['entries']} entries in {info['clusters']} clusters ({info['singletons']} "
               f"singletons, largest {info['largest']}); {info['new_entries']} placed this run"
               f"{', ' + str(info['joined_existing']) + ' into existing clusters' if info['runs'] > 1 else ''}; "
               f"{info['seconds']} s")


@atlas_app.command("search")
def search(
    sequence: Optional[str] = typer.Option(None, "--sequence", "-s", help="A sequence, or a FASTA file of queries."),
    structure: Optional[str] = typer.Option(None, "--structure", help="A structure file (PDB/mmCIF, gzipped too) "
                                                                     "or an atlas entry ID; each chain is a query."),
    atlas_dir: Path = ATLAS_OPTION,
    chain: Optional[str] = typer.Option(None, "--chain", help="Structure queries: chains to search, e.g. A or A,B."),
    evalue: float = typer.Option(1e-3, "--evalue", "-e", help="Sequence: report hits with E-value at most this."),
    min_tm: float = typer.Option(0.0, "--min-tm", help="Structure: report hits with TM-score (by query) at least "
                                                       "this."),
    max_hits: int = typer.Option(100, "--max-hits", help="Hits per query."),
    exhaustive: Optional[bool] = typer.Option(None, "--exhaustive/--prefilter",
                                              help="Sequence: align every chain (default up to 50,000 chains) or "
                                                   "only the k-mer prefilter's candidates. Structure: TM-align every "
                                                   "chain (exact, slow) or the prefilter's best (default)."),
    max_candidates: Optional[int] = typer.Option(None, "--max-candidates", min=1,
                                                 help="Chains per query the prefilter passes on (sequence 1,000, "
                                                      "structure 500)."),
    tmalign: int = typer.Option(0, "--tmalign", min=0, help="Structure: the best N candidates TM-aligned per query "
                                                             "(exact TM-scores, about 40 ms each)."),
    engine: str = typer.Option("auto", "--engine", help="Sequence: phmmer (pyhmmer), mmseqs (MMseqs2, where "
                                                         "installed) or auto (mmseqs where installed)."),
    sensitivity: float = typer.Option(5.7, "--sensitivity", help="Sequence, MMseqs2 engine: its -s (1-7.5; 7.5 "
                                                                  "finds more, slower)."),
    mode: str = typer.Option("3diaa", "--mode", help="Structure: 3diaa (Foldseek's 3Di prefilter; without --refine "
                                                      "candidates ranked by 3Di+BLOSUM62 alignment), 3di (3Di only) "
                                                      "or alphabet (foldatlas' own alphabet)."),
    refine: bool = typer.Option(True, "--refine/--no-refine",
                                help="Structure: rank the candidates by TM-scores refined from their 3Di alignments "
                                     "by TM-align's iterations (compiled; modes 3diaa and 3di)."),
    structure_prefilter: str = typer.Option("auto", "--structure-prefilter",
                                            help="Structure: scan (Smith-Waterman of every chain's 3Di string), "
                                                 "kmer (Foldseek's 3Di k-mer stage first, passing 5% of the "
                                                 "chains to the scan) or auto (kmer from 100,000 chains)."),
    kmer_threshold: Optional[float] = typer.Option(None, "--kmer-threshold",
                                                   help="Structure: the k-mer stage's similar-k-mer score threshold "
                                                        "(default 26); lower finds more, slower (at 1M entries 23: "
                                                        "0.92 of the planted copies against 0.90, 2.6 s per query "
                                                        "against 1.7 s)."),
    superposed: Optional[Path] = typer.Option(None, "--superposed",
                                              help="Structure: write each hit's chain superposed on the query into "
                                                   "this folder (PDB)."),
    threads: Optional[int] = typer.Option(None, "--threads", help="Threads (sequence: queries in parallel)."),
    representatives: bool = typer.Option(False, "--representatives", help="Report only cluster representatives "
                                                                           "(see 'atlas cluster'; --clustering)."),
    clustering: Optional[str] = typer.Option(None, "--clustering", help="With --representatives: which clustering "
                                                                         "(default: the only one)."),
    fmt: str = typer.Option("tsv", "--format", "-f", help="tsv (one line per hit) or json (with alignments)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to a file (default: stdout)."),
) -> None:
    """Search the atlas by sequence (MMseqs2 where installed, else pyhmmer's phmmer: E-value, bit score, identity,
    coverage, alignment) or by
    structure (Foldseek's 3Di prefilter, candidates ranked by TM-scores refined from their 3Di alignments, E-values,
    TM-align of the best on request: TM-scores, RMSD, aligned length, identity)."""
    from foldatlas.atlas import open_atlas
    from foldatlas.errors import InvalidOptionError
    from foldatlas.files import atomic_write_text

    if fmt not in ("tsv", "json"):
        raise InvalidOptionError(f"--format must be tsv or json, not {fmt!r}")
    if (sequence is None) == (structure is None):
        raise InvalidOptionError("give either --sequence or --structure")
    from foldatlas.files import check_output_path

    # Options, queries and output paths are checked before the atlas is opened (its indexes may catch up).
    if output is not None:
        check_output_path(output, "--output")
    if superposed is not None:
        check_output_path(superposed, "--superposed", folder=True)
    wanted_hits = max_hits
    if representatives:  # members crowd representatives out of the first hits: ask for more, keep the first
        max_hits = max_hits * 20
    elif clustering is not None:
        raise InvalidOptionError("--clustering goes with --representatives")
    if sequence is not None:
        from foldatlas.atlas import SearchOptions
        from foldatlas.seq.fasta import read_inputs

        options = SearchOptions(evalue=evalue, max_hits=max_hits, exhaustive=exhaustive,
                                max_candidates=max_candidates or 1000, threads=threads, engine=engine,
                                sensitivity=sensitivity)
        queries = read_inputs([sequence], default_name="query")
    else:
        options = _structure_options(min_tm, max_hits, bool(exhaustive), max_candidates, tmalign, threads, mode,
                                     structure_prefilter, kmer_threshold, refine)
    with open_atlas(atlas_dir) as atlas:
        chosen = None
        if representatives:
            from foldatlas.atlas.export import choose_clustering

            chosen = choose_clustering(atlas, clustering)
        def keep(results):
            if chosen is None:
                return results
            from foldatlas.atlas.cluster import representatives_only

            return representatives_only(atlas, results, chosen, wanted_hits)

        if sequence is not None:
            names, lengths, results, columns = _search_sequences(atlas, queries, options)
            results = keep(results)
        else:
            names, lengths, results, columns = _search_structures(atlas, structure, chain, options, superposed, keep)
    if fmt == "json":
        text = json.dumps([{"query": n, "length": n_res, "hits": [h.to_dict() for h in hits]}
                           for n, n_res, hits in zip(names, lengths, results)], indent=1) + "\n"
    else:
        lines = ["\t".join(columns)]
        for hits in results:
            lines.extend("\t".join(_cell(getattr(h, c)) for c in columns) for h in hits)
        text = "\n".join(lines) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(output, text)
    _log(f"{sum(len(h) for h in results)} hits for {len(names)} queries")


def _search_sequences(atlas, queries, options):
    from foldatlas.atlas import search_sequences
    from foldatlas.atlas.seqsearch import HIT_COLUMNS

    results = search_sequences(atlas, queries, options)
    return [q.name for q in queries], [q.length for q in queries], results, HIT_COLUMNS


def _structure_options(min_tm, max_hits, exhaustive, max_candidates, tmalign, threads, mode="3diaa",
                       prefilter="auto", kmer_threshold=None, refine=True):
    import os

    from foldatlas.atlas.structsearch import StructureSearchOptions

    workers = len(os.sched_getaffinity(0)) if (tmalign > 1 or exhaustive) else 0
    return StructureSearchOptions(max_hits=max_hits, min_tm=min_tm, exhaustive=exhaustive,
                                  candidates=max_candidates or StructureSearchOptions.candidates, tmalign=tmalign,
                                  threads=threads, refine=refine,
                                  workers=workers if workers > 1 else 0, mode=mode, prefilter=prefilter,
                                  kmer_threshold=StructureSearchOptions.kmer_threshold if kmer_threshold is None
                                  else kmer_threshold)


def _search_structures(atlas, structure, chain, options, superposed, keep=lambda results: results):
    from foldatlas.atlas.structsearch import STRUCTURE_HIT_COLUMNS, query_chains, search_structures, superposed_chain
    from foldatlas.files import atomic_write_text
    from foldatlas.seq.records import safe_names
    from foldatlas.structure.io import to_pdb_string

    queries = query_chains(structure, atlas, chain)
    results = keep(search_structures(atlas, queries, options))
    if superposed is not None:
        for hits in results:
            stems = safe_names([f"{h.query}__{h.target}_{h.chain}" for h in hits])
            for h, stem in zip(hits, stems):
                remark = f"{h.target} chain {h.chain} superposed on {h.query}: TM-score {h.tm_score} ({h.method})"
                atomic_write_text(superposed / f"{stem}.pdb", to_pdb_string(superposed_chain(atlas, h), [remark]))
    return [q.name for q in queries], [len(q.trace.ca) for q in queries], results, STRUCTURE_HIT_COLUMNS


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.3g}" if value < 1e-3 or value > 1e4 else f"{value:.4f}".rstrip("0").rstrip(".")
    return str(value)


def register(app: typer.Typer) -> None:
    """Add the ``atlas`` command group to ``app``."""
    app.add_typer(atlas_app, name="atlas")
