"""subgraphs/crm"""
