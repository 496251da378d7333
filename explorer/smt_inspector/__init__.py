"""SMT's gradient-block inspector, by concern: ``record`` (block sums of a warm-up), ``collect`` (the warm-up
that makes a record), ``cache`` (memory and disk caches), ``analysis`` (scores, selection, shares, stability,
overlaps) and ``export`` (JSON and CSV).  The names below are the package's public interface.  The method itself
(its facts, block rules and adapter) is ``explorer.methods.smt``, ``smt_blocks`` and ``smt_adapter``."""

from explorer.smt_inspector.analysis import (RULES, Setting, SMTAnalysis, analyze, check_request, default_types,
                                             jaccard, score_maps, to_selection, weight_change_maps,
                                             weight_magnitude_maps)
from explorer.smt_inspector.cache import cached_record, clear_memory_cache, load_record, record_key, save_record
from explorer.smt_inspector.collect import DEFAULT_CHECKPOINTS, MODES, RecordSettings, collect_gradients, warmup_loss
from explorer.smt_inspector.export import analysis_to_dict, analysis_to_json, scores_csv, selection_csv
from explorer.smt_inspector.record import GradientRecord, default_grain, record_from_sums

__all__ = ["RULES", "MODES", "DEFAULT_CHECKPOINTS", "Setting", "SMTAnalysis", "GradientRecord", "analyze", "default_types",
           "check_request", "jaccard", "score_maps", "to_selection", "weight_change_maps", "weight_magnitude_maps",
           "cached_record", "clear_memory_cache", "load_record", "record_key", "save_record", "collect_gradients",
           "warmup_loss", "analysis_to_dict", "analysis_to_json", "scores_csv", "selection_csv", "default_grain",
           "record_from_sums", "RecordSettings"]
