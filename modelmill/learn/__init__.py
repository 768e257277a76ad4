"""Learning: one sub-package per problem kind (featurizers, candidates, selection and their
evaluator, in :mod:`modelmill.learn.kinds`), the shared evaluation figures and explanations.
Pure computation: no MLflow, no Prefect, no GX.
"""
