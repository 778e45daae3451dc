-- The qualifier of a censored lab result: '<' below the LLOQ, '>' above the ULOQ, null for a
-- plain number. $below and $above are the spellings declared in schemas/study.yaml
-- (censored_results, also listed in ref.result_censoring), joined into one pattern each and
-- written here as constants: DuckDB compiles a constant pattern once, a pattern read from a
-- table once per row.
-- Surrounding whitespace of any kind (tab, line break) is ignored: '>1500' followed by a line
-- break is above the ULOQ, never the number 1500 (such a row is held back before, by the
-- result_no_line_break expectation; this keeps the macro right on its own).
create or replace macro ref.result_qualifier(result) as
    case
        when regexp_full_match(trim(result, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)), $below, 'i') then '<'
        when regexp_full_match(trim(result, ' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13)), $above, 'i') then '>'
    end;
