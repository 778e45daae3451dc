-- For samples delivered in more than one gene-level delivery: each valid row with its values, and
-- whether it is the newest valid value of its sample and gene (a later delivery corrects an
-- earlier one); audit.correction lists the values replaced from here, without the gene table.
-- Rows of samples delivered once are not listed: they are the newest. Incremental: only the
-- samples that the build's new deliveries carry are (re)computed, replacing their rows.
with

shared_samples as (
    select sample_id
    from staging.int_transcript_gene__samples
    group by sample_id
    having count(distinct delivery_id) > 1
        and bool_or(delivery_id in (select delivery_id from new_deliveries))
),

rows_of_shared as (
    select delivery_id, row_number, upper(trim(sample_id)) as sample_id, gene_id, gene_symbol, expression
    from raw.transcript_gene
    where sample_id in (
        select delivered_sample_id from staging.int_transcript_gene__samples
        where sample_id in (select sample_id from shared_samples)
    )
),

valid as (
    select * from rows_of_shared
    anti join staging.int_transcript_gene__row_verdicts using (delivery_id, row_number)
)

select
    delivery_id,
    row_number,
    sample_id,
    gene_id,
    gene_symbol,
    expression,
    row_number() over (
        partition by sample_id, gene_id order by delivery_id desc, row_number desc
    ) = 1 as is_latest
from valid
