"""subgraphs/erp"""
