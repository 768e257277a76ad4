"""Operations around the registry: alerts, approval and rollback of champions, status and
history, the model card, the summary report and the docs' reference pages.
"""
