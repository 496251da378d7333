"""The page layer's slow tests: ``make test-fast`` (the core and page layers, ``-m "not slow"``) leaves them out
and ``make test`` runs them.  Each took 0.5 s or more in one of three runs on the project's 2-core
machine (pytest --durations, load average 3.5-8): a subprocess (the command line), a real run trained, a model loaded or every page run.  A test
renamed or moved out of this folder fails ``tests/tooling/test_markers.py`` until its name here follows."""

from __future__ import annotations

from pathlib import Path

from tests.support.markers import mark_slow

HERE = Path(__file__).resolve().parent
SLOW = {
    "test_page_board.py::test_clear_refused_without_token_accepted_with_it",
    "test_page_board.py::test_compare_shares_and_shows_the_board",
    "test_page_board.py::test_fine_tune_share_control",
    "test_page_board.py::test_groups_and_the_link_to_one",
    "test_page_claims.py::test_cards_say_what_each_interval_shows_and_projector_tables_grow",
    "test_page_claims.py::test_live_rerun_quick_redraws_as_seeds_finish",
    "test_page_finetune_compare.py::test_bad_url_values_clamped",
    "test_page_finetune_compare.py::test_compare_sweep_runs",
    "test_page_finetune_compare.py::test_compare_with_runs_and_controls",
    "test_page_finetune_compare.py::test_default_page_runs",
    "test_page_finetune_compare.py::test_every_control_moved",
    "test_page_finetune_compare.py::test_history_survives_a_reload_as_a_copy",
    "test_page_finetune_compare.py::test_memory_refusal_shown_with_estimate",
    "test_page_finetune_compare.py::test_precision_and_checkpointing_controls_reach_the_run",
    "test_page_finetune_compare.py::test_short_run_finishes_and_joins_history",
    "test_page_finetune_compare.py::test_start_then_stop_keeps_partial_history",
    "test_page_finetune_compare.py::test_two_starts_in_a_row_start_one_run",
    "test_page_home_playground.py::test_every_method_and_control_on_tiny_bert",
    "test_page_home_playground.py::test_home_runs",
    "test_page_home_playground.py::test_impossible_knobs_readable_error",
    "test_page_home_playground.py::test_instructor_mode_hides_advanced",
    "test_page_home_playground.py::test_playground_default_and_url_written",
    "test_page_home_playground.py::test_preset_button_loads_values",
    "test_page_home_playground.py::test_preset_url_restored",
    "test_page_home_playground.py::test_same_method_on_both_sides",
    "test_page_home_playground.py::test_smt_blocks_slider_steps_near_auto_and_the_warmup_time_is_measured",
    "test_page_home_playground.py::test_smt_preset_after_another_method",
    "test_page_home_playground.py::test_tied_lora_switches_and_compare_on_tiny_llama",
    "test_page_lesson.py::test_a_malformed_upload_is_one_line_naming_the_step_and_the_field",
    "test_page_lesson.py::test_a_move_changes_the_banner_and_a_following_page_opens_the_step",
    "test_page_lesson.py::test_a_page_that_does_not_follow_stays_and_comes_back_when_asked",
    "test_page_lesson.py::test_answers_from_the_banner_one_per_session_changeable_refusals_one_line",
    "test_page_lesson.py::test_the_teachers_panel_counts_closes_and_reveals_the_computed_truth",
    "test_page_lesson.py::test_the_token_is_refused_then_accepted_and_never_in_the_address",
    "test_page_lesson.py::test_the_unlocked_teacher_moves_the_room_from_any_pages_banner_and_follows_it",
    "test_page_lesson.py::test_without_a_token_nothing_is_led_drawn_or_polled",
    "test_page_memory.py::test_bad_url_values_are_clamped_and_presets_restore",
    "test_page_memory.py::test_every_control_moves_and_the_url_follows",
    "test_page_memory.py::test_instructor_mode_hides_advanced_inputs",
    "test_page_memory.py::test_measure_tiny_bert_shows_measured_vs_estimated",
    "test_page_memory.py::test_zero_checkpointing_optimizer_and_scope_on_the_page",
    "test_page_memory.py::test_zero_preset_sets_every_new_option",
    "test_page_modes.py::test_a_fresh_session_starts_with_both_modes_off",
    "test_page_modes.py::test_modes_come_from_the_url_and_survive_page_changes",
    "test_page_modes.py::test_run_picker_follows_the_newest_run_until_the_user_picks",
    "test_page_smt.py::test_bad_url_values_are_clamped",
    "test_page_smt.py::test_default_page_computes_tiny_llama_and_every_control_moves",
    "test_page_smt.py::test_instructor_mode_hides_advanced_controls",
    "test_page_smt.py::test_stop_ends_a_long_warm_up",
    "test_page_smt.py::test_the_first_heatmap_opens_on_a_matrix_where_smt_selects_blocks",
    "test_page_smt.py::test_train_with_this_selection_hands_over_and_fine_tune_uses_it",
    "test_page_state.py::test_the_address_is_written_on_every_way_out",
    "test_page_state.py::test_values_come_from_the_address_clamped_and_go_back_to_it",
    "test_page_upload.py::test_encoding_box_and_wrong_choice",
    "test_page_upload.py::test_first_upload_in_a_fresh_session_runs_under_the_users_name",
    "test_page_upload.py::test_malformed_uploads_through_the_page",
    "test_page_upload.py::test_upload_widgets_take_the_one_limit",
}


def pytest_collection_modifyitems(items):
    mark_slow(items, HERE, SLOW)
