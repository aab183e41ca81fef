-- The SQL cookbook: questions researchers ask of the ketamine catalog, one query each.
--
-- Every query here is also a canned query of the `catalog` database in Datasette
-- (db/plugins/cookbook.py reads this file; nothing to add to metadata.yml), at
-- /catalog/<name>, and runs in the tests (tests/test_cookbook.py) against a catalog
-- of real PubMed records. Paste any of them into /catalog?sql= or sqlite3 to adapt it.
--
-- Format: a query starts at its `-- name:` line, followed by `-- title:`, `-- description:`
-- (continued on `--   ` lines) and `-- example:` lines (parameter values the tests and the
-- docs use; `-- example:` alone means every parameter left empty). The SQL runs to the next
-- `-- name:`. Parameters are `:name`; Datasette shows each as a form field, and an empty
-- field means the default the description gives. The catalog checks every parameter before
-- the query runs (PARAM_RULES in db/plugins/catalog.py): a value in a form it cannot read
-- (a date that is no date, a bare number where a run id must be written run:12 or #12, a
-- status or design it does not know, a count that is not a whole number) answers HTTP 400
-- naming the parameter and the forms it accepts, instead of "No rows".
--
-- Conventions: "current" records are those the topic query still returns and NLM has not
-- deleted (`matches_query = 1 and is_deleted = 0`, the view column `is_current`); the questions
-- about records ask only for those that concern depression or suicidality in the psychiatric
-- sense (`psychiatric = 1`: the query's word "depression" also finds respiratory, myocardial
-- or synaptic depression; the evidence is each record's `depression` tag). A record's
-- design is its primary design (`articles.study_design`, from PubMed's indexing first and
-- text rules otherwise; every tag and its evidence is in `article_tags`). "Randomised
-- trial" means primary design `rct` or `crossover_rct`. The views used here
-- (`article_overview`, `article_mesh_named`, `article_mesh_names`, `article_authors_named`,
-- `harvest_health`) are created by migration 0004_cookbook_views in harvest/schema.py.


-- name: esketamine_trials
-- title: Esketamine trials and their trial registrations
-- description: Current records on esketamine (Spravato, S-ketamine) — tagged so by the
--   evidence tags, or naming it in the title, abstract or keywords — with the trial
--   registrations they cite, ClinicalTrials.gov NCT ids apart from other registries.
--   By default randomised trials only; design=any lists every design; any other value
--   is one design (e.g. open_label_trial, observational_cohort; an unknown one is refused).
-- example:
-- example: design=any
with patterns(pattern) as (
  values ('%esketamin%'), ('%spravato%'), ('% s-ketamin%'), ('%(s)-ketamin%'), ('%(s)ketamin%'),
         ('%(s+)-ketamin%'), ('%s(+)-ketamin%')
), esketamine as (
  select pmid from article_tags where facet = 'molecule' and value = 'esketamine'
  union
  select a.pmid from articles a join patterns p
    on ' ' || lower(coalesce(a.title, '') || ' ' || coalesce(a.abstract, '') || ' '
                    || coalesce(a.keywords, '')) like p.pattern
  -- the full-text index narrows the records to read to those with a candidate word
  where a.pmid in (select rowid from articles_fts
                   where articles_fts match 'esketamin* OR spravato OR "s ketamine"')
), wanted(design) as (
  select coalesce(nullif(lower(trim(:design)), ''), 'randomised')
)
select o.pmid, o.title, o.first_author, o.journal, o.pub_year, o.study_design,
       (select group_concat(trial_id, '; ') from (
          select tr.trial_id from trial_registrations tr
          where tr.pmid = o.pmid and tr.trial_id like 'NCT%' order by tr.trial_id)) as nct_ids,
       (select group_concat(trial_id, '; ') from (
          select tr.registry || ' ' || tr.trial_id as trial_id from trial_registrations tr
          where tr.pmid = o.pmid and tr.trial_id not like 'NCT%' order by tr.trial_id)) as other_registrations,
       o.molecules, o.pubmed_url
from article_overview o, wanted w
where o.pmid in (select pmid from esketamine)
  and o.is_current and o.psychiatric = 1
  and (w.design = 'any'
       or (w.design = 'randomised' and o.study_design in ('rct', 'crossover_rct'))
       or o.study_design = w.design)
order by o.pub_date desc, o.pmid desc


-- name: retractions_explained
-- title: Retracted records and what retracted them
-- description: Every record PubMed marks as retracted, with the retraction notice that
--   retracted it (PMID, title and date when the notice is in the catalog too, else the
--   citation PubMed gives), newest first. Retracted records stay in the catalog, flagged.
-- example:
select a.pmid, coalesce(nullif(a.title, ''), a.vernacular_title) as title, a.journal, a.pub_year, a.matches_query,
       cc.ref_pmid as retraction_notice_pmid,
       coalesce(nullif(n.title, ''), n.vernacular_title, cc.ref_source) as retraction_notice,
       n.pub_date as notice_date,
       case when cc.ref_pmid is not null
            then 'https://pubmed.ncbi.nlm.nih.gov/' || cc.ref_pmid || '/' end as notice_url
from articles a
left join comments_corrections cc on cc.pmid = a.pmid and cc.ref_type = 'RetractionIn'
left join articles n on n.pmid = cc.ref_pmid
where a.is_retracted = 1
order by a.pub_date desc, a.pmid desc, cc.position


-- name: top_rct_authors
-- title: Authors with the most randomised trials
-- description: Authors of current randomised trials, most trials first (ties: more first
--   authorships, then name). An author is a name as PubMed spells it (last name and
--   initials): two people with the same name count as one; the ORCIDs column shows the
--   identifiers their records carry. min_trials (a whole number, default 1) drops authors
--   with fewer.
-- example:
-- example: min_trials=2
select n.author_id, n.author_name,
       group_concat(distinct n.orcid) as orcids,
       count(distinct o.pmid) as trials,
       sum(n.position = 1) as as_first_author,
       min(o.pub_year) as first_year, max(o.pub_year) as latest_year,
       group_concat(o.pmid, ' ') as pmids
from (select pmid, pub_year from articles  -- the trials first: a few rows per thousand
      where study_design in ('rct', 'crossover_rct') and matches_query = 1 and is_deleted = 0
        and psychiatric = 1) o
join article_authors_named n on n.pmid = o.pmid
where n.role = 'author' and n.valid = 1
group by n.author_id
having count(distinct o.pmid) >= coalesce(cast(nullif(trim(:min_trials), '') as integer), 1)
order by trials desc, as_first_author desc, n.author_name, n.author_id
limit 50


-- name: mesh_cooccurrence
-- title: MeSH headings that co-occur with a heading
-- description: For the current records NLM indexed with one MeSH heading (default
--   "Suicidal Ideation", any case; a heading no record carries is refused), every other
--   heading on those records: in how many, what share, and how often as a major topic.
--   Records awaiting indexing have no MeSH yet.
-- example:
-- example: term=Depression
with focus_term(name) as (
  select coalesce(nullif(trim(:term), ''), 'Suicidal Ideation')
), focus_ui as (  -- the heading's descriptor(s) by name, then its records by descriptor
  select d.descriptor_ui from mesh_descriptors d, focus_term f where d.name = f.name collate nocase
), focus as (
  -- The heading's records first (the descriptor index), then whether each is current: CROSS
  -- JOIN keeps that order, where SQLite would read every current record and look for the heading.
  select distinct m.pmid
  from article_mesh m cross join articles a on a.pmid = m.pmid
  where m.descriptor_ui in (select descriptor_ui from focus_ui)
    and a.matches_query = 1 and a.is_deleted = 0 and a.psychiatric = 1
)
select d.name as co_occurring_heading, m.descriptor_ui,
       count(*) as records,
       round(100.0 * count(*) / (select count(*) from focus), 1) as percent_of_focus_records,
       sum(m.major) as as_major_topic
from focus
join article_mesh m on m.pmid = focus.pmid
join mesh_descriptors d on d.descriptor_ui = m.descriptor_ui
where m.descriptor_ui not in (select descriptor_ui from focus_ui)
group by m.descriptor_ui
order by records desc, co_occurring_heading


-- name: rct_share_by_year
-- title: Share of randomised trials among primary clinical studies, per year
-- description: Per publication year, the current primary clinical studies (randomised,
--   crossover, open-label trials, cohort and other observational studies, case-control
--   studies, case reports and series) and the share of them that are randomised trials.
--   Secondary analyses, protocols, reviews, preclinical and commentary records are not
--   primary clinical studies here.
-- example:
select pub_year,
       count(*) as primary_studies,
       sum(study_design in ('rct', 'crossover_rct')) as randomised_trials,
       round(100.0 * sum(study_design in ('rct', 'crossover_rct')) / count(*), 1) as rct_percent,
       sum(study_design = 'open_label_trial') as open_label_trials,
       sum(study_design in ('observational_cohort', 'case_control')) as observational,
       sum(study_design = 'case_report_series') as case_reports
from articles
where matches_query = 1 and is_deleted = 0 and psychiatric = 1 and pub_year is not null
  and study_design in ('rct', 'crossover_rct', 'open_label_trial', 'observational_cohort',
                       'case_control', 'case_report_series')
group by pub_year
order by pub_year


-- name: route_population_mix
-- title: Routes of administration by population, for records on ketamine
-- description: Current records with a ketamine molecule tag (racemic ketamine, esketamine,
--   arketamine, metabolites, or ketamine unspecified), counted by route and population
--   tags; a record with two routes or populations counts in each cell. "(not stated)"
--   when no rule found one.
-- example:
select coalesce(r.value, '(not stated)') as route,
       coalesce(p.value, '(not stated)') as population,
       count(distinct a.pmid) as records,
       count(distinct case when a.study_design in ('rct', 'crossover_rct') then a.pmid end) as randomised_trials
from articles a
left join article_tags r on r.pmid = a.pmid and r.facet = 'route'
left join article_tags p on p.pmid = a.pmid and p.facet = 'population'
-- The records with a molecule tag first (the tags' index), not a lookup for every current record.
-- ("+": not through the index of current records, which would read them all.)
where a.pmid in (select k.pmid from article_tags k where k.facet = 'molecule')
  and +a.matches_query = 1 and +a.is_deleted = 0 and +a.psychiatric = 1
group by route, population
order by records desc, route, population


-- name: top_journals
-- title: Journals that publish the most records
-- description: Journals by number of current records, with their randomised trials and
--   systematic reviews or meta-analyses, and the years they span. design limits the count
--   to one primary design (e.g. rct; an unknown one is refused); empty counts every record.
-- example:
-- example: design=rct
-- Counted from the index of current records by journal alone (it carries these columns,
-- in journal order), then abbreviated.
select t.journal,
       (select coalesce(a.journal_iso, a.journal) from articles a where a.journal = t.journal limit 1)
         as journal_abbrev,
       t.records, t.randomised_trials, t.systematic_reviews, t.first_year, t.latest_year
from (
  select journal, count(*) as records,
         sum(study_design in ('rct', 'crossover_rct')) as randomised_trials,
         sum(study_design in ('systematic_review', 'meta_analysis')) as systematic_reviews,
         min(pub_year) as first_year, max(pub_year) as latest_year
  from articles
  where matches_query = 1 and is_deleted = 0 and psychiatric = 1 and journal is not null
    and (trim(:design) = '' or study_design = lower(trim(:design)))
  group by journal
  order by records desc, journal
  limit 25
) t
order by t.records desc, t.journal


-- name: trials_reported_more_than_once
-- title: Registered trials reported in more than one record
-- description: Trial registrations (NCT, ISRCTN, EudraCT, ...) that more than one current
--   record cites — the main report, secondary analyses, protocols, errata — so a review
--   can group multiple reports of one trial before counting trials.
-- example:
select tr.trial_id, tr.registry,
       count(distinct tr.pmid) as records,
       group_concat(tr.pmid || ' (' || coalesce(a.study_design, 'other') || ', '
                    || coalesce(a.pub_year, '?') || ')', '; ') as reports
from trial_registrations tr
join articles a on a.pmid = tr.pmid
where a.matches_query = 1 and a.is_deleted = 0 and a.psychiatric = 1
group by tr.trial_id
having count(distinct tr.pmid) > 1
order by records desc, tr.trial_id


-- name: rcts_awaiting_indexing
-- title: Randomised trials not yet indexed by NLM
-- description: Current records still awaiting MeSH indexing (In-Process, In-Data-Review,
--   Publisher) that the text rules tag as randomised trials, with the words that fired.
--   A search on MeSH or publication types alone misses them; check them by hand.
-- example:
select o.pmid, o.title, o.journal, o.pub_date, o.citation_status, o.study_design,
       t.evidence as why_randomised, t.confidence, o.trial_ids
from article_overview o
join article_tags t on t.pmid = o.pmid and t.facet = 'design' and t.value = 'rct'
-- The trials tagged so, kept when the index of records awaiting indexing (and on depression)
-- lists them: only those records are read, not every trial's.
where t.pmid in (select pmid from articles where awaiting_indexing = 1 and psychiatric = 1)
  and o.is_current and o.psychiatric = 1
order by o.pub_date desc, o.pmid desc


-- name: funders_of_rcts
-- title: Who funds the randomised trials
-- description: Grant agencies named on current randomised trials, by number of trials
--   (a trial with two grants from one agency counts once).
-- example:
select coalesce(g.agency, '(agency not given)') as agency, g.country,
       count(distinct g.pmid) as randomised_trials,
       group_concat(distinct g.pmid) as pmids
from grants g
join articles a on a.pmid = g.pmid
where a.matches_query = 1 and a.is_deleted = 0 and a.psychiatric = 1
  and a.study_design in ('rct', 'crossover_rct')
group by agency, g.country
order by randomised_trials desc, agency, g.country
limit 50


-- name: new_records_by_design
-- title: New records since a date or a run, by design
-- description: Records the catalog first stored after a point in time, by primary design,
--   with how many of them are current. since: a date (YYYY-MM-DD, also 2026/12/04 or
--   2026-12-4; compared with the start of the run that stored the record), a run id written
--   run:12 or #12 (records first stored by later runs; a bare number could be a year and is
--   refused), or empty for everything after the previous successful run (what the latest
--   run added).
-- example:
-- example: since=2000-01-01
-- example: since=run:0
with cutoff as (
  select case when trim(:since) = ''
              then coalesce((select id from harvest_runs where status = 'success' and coalesce(source, 'pubmed') = 'pubmed'
                             order by id desc limit 1 offset 1), 0)
              when ltrim(trim(:since), 'run:#') not glob '*[^0-9]*'
              then cast(ltrim(trim(:since), 'run:#') as integer) end as after_run,
         case when ltrim(trim(:since), 'run:#') glob '*[^0-9]*' then trim(:since) end as since_date
), by_run as (
  -- Articles per run that first stored them, design and flags: harvest/summaries.py keeps
  -- these counts (a few hundred rows, recounted when a harvest, import or retag ends); while a
  -- write since has made them stale (summary_state), they are counted here from the rows.
  -- (summary_state first, CROSS JOIN: the branch that does not apply reads no row.)
  select c.first_seen_run, c.study_design, c.matches_query, c.is_deleted, c.psychiatric, c.is_retracted,
         c.is_retraction_notice, c.records
  from summary_state s cross join article_run_counts c where s.stale = 0
  union all
  select a.first_seen_run, a.study_design, a.matches_query, a.is_deleted, a.psychiatric, a.is_retracted,
         a.is_retraction_notice, count(*)
  from summary_state s cross join articles a where s.stale is not 0
  group by 1, 2, 3, 4, 5, 6, 7
), new as (
  select b.* from by_run b
  left join harvest_runs r on r.id = b.first_seen_run, cutoff c
  where b.first_seen_run > c.after_run or r.started_at >= c.since_date
)
select coalesce(study_design, 'other') as study_design,
       sum(records) as new_records,
       sum((matches_query = 1 and is_deleted = 0 and psychiatric = 1) * records) as current,
       sum((is_retracted = 1) * records) as retracted
from new
group by 1
order by new_records desc, study_design


-- name: new_rcts_for_screening
-- title: New randomised trials to screen
-- description: Current randomised trials first stored after a point in time (since: a
--   date such as 2026-12-04, a run id written run:12 or #12, or empty for what the latest
--   successful run added), not retracted —
--   the list a living review screens after each harvest. Export it with the page's RIS link.
-- example:
-- example: since=run:0
with cutoff as (
  select case when trim(:since) = ''
              then coalesce((select id from harvest_runs where status = 'success' and coalesce(source, 'pubmed') = 'pubmed'
                             order by id desc limit 1 offset 1), 0)
              when ltrim(trim(:since), 'run:#') not glob '*[^0-9]*'
              then cast(ltrim(trim(:since), 'run:#') as integer) end as after_run,
         case when ltrim(trim(:since), 'run:#') glob '*[^0-9]*' then trim(:since) end as since_date
)
select o.pmid, o.title, o.first_author, o.journal, o.pub_date, o.study_design, o.molecules,
       o.trial_ids, o.doi, o.first_seen_run, r.started_at as first_seen_at, o.pubmed_url
from article_overview o
left join harvest_runs r on r.id = o.first_seen_run, cutoff c
where (o.first_seen_run > c.after_run or r.started_at >= c.since_date)
  and o.is_current and o.psychiatric = 1 and +o.is_retracted = 0
  -- The trials first (the design index), not every record walked newest first or every
  -- unretracted one ("+"): a few per thousand records.
  and o.pmid in (select pmid from articles where study_design in ('rct', 'crossover_rct'))
order by o.pub_date desc, o.pmid desc


-- name: prisma_flow
-- title: PRISMA-style record counts
-- description: How the records the topic query identified divide up, for the whole catalog
--   and for the records first stored after a point in time (since, as in
--   new_records_by_design: a date such as 2026-12-04, a run id written run:12 or #12, or
--   empty). The removals exclude each other, in this order: deleted by
--   NLM, no longer matching the query, retracted, retraction notices, not about depression
--   in the psychiatric sense (the query's "depression" also finds respiratory or synaptic
--   depression: see the record's `depression` tag); what remains goes to screening.
--   identified = the removals + remaining. Records an import stored although the topic does
--   not match them (`harvest import` without --match-topic) were never identified: not counted.
-- example:
-- example: since=run:0
with cutoff as (
  select case when trim(:since) = ''
              then coalesce((select id from harvest_runs where status = 'success' and coalesce(source, 'pubmed') = 'pubmed'
                             order by id desc limit 1 offset 1), 0)
              when ltrim(trim(:since), 'run:#') not glob '*[^0-9]*'
              then cast(ltrim(trim(:since), 'run:#') as integer) end as after_run,
         case when ltrim(trim(:since), 'run:#') glob '*[^0-9]*' then trim(:since) end as since_date
), by_run as (
  -- Articles per run that first stored them, design and flags: harvest/summaries.py keeps
  -- these counts (a few hundred rows, recounted when a harvest, import or retag ends); while a
  -- write since has made them stale (summary_state), they are counted here from the rows.
  -- (summary_state first, CROSS JOIN: the branch that does not apply reads no row.)
  select c.first_seen_run, c.study_design, c.matches_query, c.is_deleted, c.psychiatric, c.is_retracted,
         c.is_retraction_notice, c.records
  from summary_state s cross join article_run_counts c where s.stale = 0 and not coalesce(c.outside_topic, 0)
  union all
  select a.first_seen_run, a.study_design, a.matches_query, a.is_deleted, a.psychiatric, a.is_retracted,
         a.is_retraction_notice, count(*)
  from summary_state s cross join articles a where s.stale is not 0
    and not (a.matches_query = 0 and a.unmatched_run is null)
  group by 1, 2, 3, 4, 5, 6, 7
), flagged as (
  select case when b.is_deleted = 1 then 'deleted'
              when b.matches_query = 0 then 'unmatched'
              when b.is_retracted = 1 then 'retracted'
              when b.is_retraction_notice = 1 then 'notice'
              when coalesce(b.psychiatric, 0) = 0 then 'other_sense'
              else 'remaining' end as fate,
         (b.first_seen_run > c.after_run or r.started_at >= c.since_date) as is_new,
         b.records
  from by_run b left join harvest_runs r on r.id = b.first_seen_run, cutoff c
), steps(step, stage, fate) as (
  values (1, 'Records identified by the topic query', null),
         (2, 'Removed: citation deleted by NLM', 'deleted'),
         (3, 'Removed: no longer matching the topic query', 'unmatched'),
         (4, 'Removed: retracted publication', 'retracted'),
         (5, 'Removed: retraction notice', 'notice'),
         (6, 'Removed: not about depression in the psychiatric sense', 'other_sense'),
         (7, 'Records remaining for screening', 'remaining')
)
select s.step, s.stage,
       (select coalesce(sum(f.records), 0) from flagged f where s.fate is null or f.fate = s.fate) as all_records,
       (select coalesce(sum(f.records), 0) from flagged f
        where (s.fate is null or f.fate = s.fate) and f.is_new) as new_records
from steps s
order by s.step


-- name: search_strategy
-- title: The search as PRISMA-S reports it, run by run
-- description: For every successful run: the database searched, the query text and
--   version, the date it ran, the run id, and its counts, with the catalog's size after
--   it — so a review can cite exactly which snapshot of the catalog it screened
--   (cite the run id). Imports of PubMed XML files did not search PubMed: they say so.
-- example:
select r.id as run_id,
       case when r.mode = 'import' then 'PubMed/MEDLINE XML files loaded with `harvest import` (the query was not run at PubMed)'
            else 'PubMed (MEDLINE and PubMed-not-MEDLINE), searched through NCBI E-utilities' end as database_searched,
       r.query_version, r.query_text,
       substr(r.started_at, 1, 10) as date_searched, r.started_at, r.finished_at, r.mode,
       r.window_from as records_created_or_revised_since,
       r.records_promised as records_found, r.new, r.updated, r.unchanged, r.unmatched, r.deleted,
       -- Counted from the articles per run that harvest/summaries.py keeps, or from the rows
       -- while a write since has made those stale (summary_state).
       (select coalesce(sum(n), 0) from (
          select c.records as n from summary_state s cross join article_run_counts c
          where s.stale = 0 and c.first_seen_run <= r.id
          union all
          select count(*) from summary_state s cross join articles a
          where s.stale is not 0 and a.first_seen_run <= r.id)) as records_in_catalog_after_run
from harvest_runs r
where r.status = 'success'
order by r.id desc


-- name: harvest_health_now
-- title: Harvest health: the last successful run and the last failure
-- description: One row: the last successful harvest (when, what it added), the last
--   failed or aborted run and its error, whether the catalog has been failing since its
--   last success, and a run in progress if any. Imports are not harvests and are left out.
-- example:
select * from harvest_health
