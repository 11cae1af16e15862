"""The book's studies: each module is one experiment — what is run, and what is recorded.

Families (``mlcore.metric``, ``mlcore.optimization``, ...) hold algorithms only; the modules
here train or score them and write the records the chapters and the README read.
"""
