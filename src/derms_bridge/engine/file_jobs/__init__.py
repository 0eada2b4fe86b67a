"""The file flows' engine (7, 8): a CSV received from DERMS, kept in segments, sent to
CPMCS by workers, acknowledged to DERMS once. The flow's module says what each step does
and sends; these modules run the steps: `intake` (step 1, with `csv_cutter`), `workers`
(steps 2 to 5, each as it comes due, under leases) and `sending` (step 3's segments, many
at once)."""
