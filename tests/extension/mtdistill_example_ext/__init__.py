"""An extension package as a user would write one: one module per component, each registering
itself; the entry points in mtdistill_example_ext-0.1.dist-info make them known to mtdistill."""
