"""The BentoML prediction service (installed as `modelyard.bento`): input decoding and limits, the service class,
its metrics and readiness, and the quickstart that runs train → package → serve → predict.

Modules are imported one by one; `modelyard.bento.inputs` needs neither torch nor BentoML.
"""
