"""Emotion signals, opt-in only: text affect (valence, emotion categories), behavioural
affect (frustration, engagement, fatigue) and bounded emotion-aware re-ranking.

Nothing here runs for a user without their ``emotion`` consent, and a deployment switch
(``RELEVO_EMOTION__ENABLED=false``) turns all of it off.
"""
