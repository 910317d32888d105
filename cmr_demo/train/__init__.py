"""The training stage: projection heads (`heads`), the learning objectives (`objectives`), the fit loop with
exact resume (`fit`), and the stage that runs a `TrainJob` and writes one run folder per objective (`stage`;
`python -m cmr_demo.train`)."""
