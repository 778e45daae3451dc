-- Rows that repeat a sample and gene within one gene-level delivery: exact copies after the
-- first are 'duplicate_row'; copies whose values differ are all 'conflicting_values'.
-- Incremental: each delivery is looked at once, when it arrives (`new_deliveries`), and only
-- at the rows that audit.repeated_key_row lists for it.
with

-- Only the rows whose key may repeat, as listed when each file was taken in.
delivered as (
    select delivery_id, row_number, upper(trim(sample_id)) as sample_id, gene_id, gene_symbol, expression
    from raw.transcript_gene
    where delivery_id in (select delivery_id from new_deliveries)
        and (delivery_id, row_number) in (
            select delivery_id, row_number from audit.repeated_key_row
            where delivery_id in (select delivery_id from new_deliveries))
),

repeated as (
    select
        delivery_id,
        sample_id,
        gene_id,
        min(expression) is distinct from max(expression)
            or min(gene_symbol) is distinct from max(gene_symbol)
            or count(expression) not in (0, count(*))      as values_differ,
        count(distinct row(expression, gene_symbol))        as versions,
        min(row_number)                                     as first_key_row
    from delivered
    group by delivery_id, sample_id, gene_id
    having count(*) > 1
)

select
    delivered.delivery_id,
    delivered.row_number,
    case when repeated.values_differ then 'conflicting_values' else 'duplicate_row' end as rule,
    case
        when repeated.values_differ then
            'sample ' || delivered.sample_id || ' has ' || greatest(repeated.versions, 2) || ' different values of ' || delivered.gene_id
            || ' in this delivery'
        else 'exact copy of row ' || repeated.first_key_row || ' of this delivery'
    end as reason
from delivered
join repeated using (delivery_id, sample_id, gene_id)
where repeated.values_differ or delivered.row_number > repeated.first_key_row
