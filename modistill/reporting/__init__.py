"""Reports: Markdown/HTML tables and figures of finished runs, the ablation table, the motion table."""
