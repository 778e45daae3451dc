-- The planned visit schedule with target study day and analysis window.
select
    visit_code,
    visit_num,
    visit_label,
    target_day,
    window_lo,
    window_hi,
    (select list(matrix order by matrix) from ref.visit_matrix m where m.visit_code = v.visit_code) as matrices
from ref.visit as v
order by visit_num
