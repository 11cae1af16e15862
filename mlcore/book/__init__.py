"""What only the book's chapters need, above every other layer of ``mlcore``.

* ``article_siamese``: the source article's §5.1 Siamese listing (a reconstruction) and a checker
  that finds its defects (chapters 3 and 8);
* ``mathcheck``: numerical checks of the four objectives of the article's §4 (chapter 7);
* ``engineering``: speed, memory and reproducibility measurements (chapter 8, ``benchmarks/``);
* ``faq``: the tables of chapter 10's answers (sinusoid adaptation, domain shift, RL² ablations), from records;
* ``plotting``: one colour and one marker per method, the same in every chapter, and the figures several
  chapters draw;
* ``records``: the committed records and benchmark files as the chapters read them (a missing file says which
  command writes it; shared-machine timings as ratios to their peer);
* ``task_retrieval``: the tables and figures of the task-retrieval study (chapters 3 and 10).

Nothing below this package (core, families, studies) imports it.
"""
