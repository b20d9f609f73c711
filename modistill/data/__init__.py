"""modistill.data"""
