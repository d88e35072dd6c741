"""The revision lifecycle: its states and the one function that moves a revision between them."""
