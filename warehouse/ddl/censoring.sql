-- The qualifier of a censored lab result: '<' below the LLOQ, '>' above the ULOQ, null for a
-- plain number. $below and $above are the spellings declared in schemas/study.yaml
-- (censored_results, also listed in ref.result_censoring), joined into one pattern each and
-- written here as constants: DuckDB compiles a constant pattern once, a pattern read from a
-- table once per row.
create or replace macro ref.result_qualifier(result) as
    case
        when regexp_full_match(trim(result), $below, 'i') then '<'
        when regexp_full_match(trim(result), $above, 'i') then '>'
    end;
