"""Moving in: importing past correspondence as closed tickets (``ticketbot import-mail``)."""
