"""Small text data that ships with sparsekit, for calibrating and scoring
compressed language models without any download.

SENTENCES            held-out evaluation sentences (fixed, varied topics and
                     lengths); never used for calibration.
stdlib_docstrings()  calibration text: docstrings of Python's own standard
                     library, gathered at run time, selected deterministically.
"""
import hashlib
import importlib
import inspect

SENTENCES = (
    "The cat sat quietly on the windowsill, watching the rain.",
    "Interest rates rose for the third time this year, pushing mortgage costs higher.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "She scored twice in the second half and her team won the cup.",
    "Please restart the router if the internet connection keeps dropping.",
    "The recipe calls for two cups of flour, one egg and a pinch of salt.",
    "Quantum computers use qubits that can exist in a superposition of states.",
    "The museum reopened after a two-year renovation of its east wing.",
    "My flight to Tokyo was delayed by four hours because of a typhoon.",
    "Regular exercise lowers the risk of heart disease and improves sleep.",
    "The defendant pleaded not guilty and the trial was set for March.",
    "A sparse matrix stores only its nonzero entries and their positions.",
    "The orchestra performed Beethoven's ninth symphony to a sold-out hall.",
    "Volcanic ash grounded hundreds of flights across northern Europe.",
    "He forgot his umbrella, so he waited under the bus shelter.",
    "The startup raised twelve million dollars to expand into Asia.",
    "Children learn languages faster when they are immersed in them early.",
    "The bridge was closed after engineers found cracks in a support beam.",
    "Add the onions and fry them gently until they turn golden brown.",
    "Mars has the largest volcano in the solar system, Olympus Mons.",
    "The new phone has a brighter screen but a smaller battery.",
    "Voters will choose a new mayor in the election next Tuesday.",
    "I can't find my keys anywhere; did you see where I left them?",
    "The glacier has retreated by more than a kilometre in fifty years.",
    "Neural networks can be pruned so that most of their weights are zero.",
    "The library extended its opening hours during the exam period.",
    "A strong earthquake struck off the coast, but no tsunami warning was issued.",
    "The painting was sold at auction for a record price.",
    "Our team meeting has been moved to Thursday afternoon.",
    "Bees communicate the location of flowers through a waggle dance.",
    "The hotel room was small but clean, and the staff were friendly.",
    "Inflation eased slightly as energy prices fell in the autumn.",
    "Wash your hands thoroughly with soap before preparing food.",
    "The spacecraft entered orbit around Jupiter after a five-year journey.",
    "This function returns the index of the first matching element or -1.",
    "The novel follows three generations of a family in a fishing village.",
    "Heavy snowfall closed the mountain pass for most of the week.",
    "The patient recovered quickly after the surgery and went home on Friday.",
    "Compressing the model made inference four times faster on the laptop.",
    "Why do leaves change colour in the autumn?",
)


# modules whose docstrings make the calibration text (stable, present everywhere)
STDLIB_MODULES = (
    "abc", "argparse", "ast", "asyncio", "base64", "bisect", "calendar", "collections",
    "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "email",
    "enum", "fractions", "ftplib", "functools", "gettext", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html", "http.client", "inspect", "io", "ipaddress", "itertools",
    "json", "logging", "mailbox", "mimetypes", "numbers", "operator", "optparse",
    "os", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets",
    "selectors", "shlex", "shutil", "smtplib", "socket", "statistics", "string",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize",
    "traceback", "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref",
    "zipfile",
)


def _paragraphs(doc):
    for para in doc.split("\n\n"):
        text = " ".join(para.split())
        # prose only: skip doctest lines, tables and signatures
        if 60 <= len(text) <= 600 and ">>>" not in text and text.count("  ") == 0 \
                and sum(c.isalpha() for c in text) > 0.7 * len(text):
            yield text


def stdlib_docstrings(n=128, seed=0, modules=STDLIB_MODULES):
    """`n` prose paragraphs from the docstrings of standard-library modules and
    their public functions and classes.

    The selection depends only on (n, seed) and the installed Python's
    docstrings: candidates are de-duplicated, ordered by a hash of
    (seed, text) and the first n taken. Returns a list of str.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    seen = set()
    for modname in modules:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            continue
        objs = [mod] + [obj for name, obj in sorted(vars(mod).items())
                        if not name.startswith("_")
                        and (inspect.isfunction(obj) or inspect.isclass(obj))
                        and getattr(obj, "__module__", None) == mod.__name__]
        for obj in objs:
            doc = inspect.getdoc(obj)
            if doc:
                seen.update(_paragraphs(doc))

    def key(text):
        return hashlib.sha256(f"{seed}\0{text}".encode()).hexdigest()
    return sorted(seen, key=key)[:n]


# calibration sentences: everyday prose, disjoint from SENTENCES (docstrings are
# technical; a model used on general text calibrates better on general text)
CALIBRATION_SENTENCES = (
    "The train to the airport leaves every twenty minutes from platform four.",
    "He painted the fence blue and planted tulips along the path.",
    "Scientists discovered a new species of frog in the rainforest.",
    "The soup needs more pepper and a little lemon juice.",
    "Our neighbours are moving to Canada at the end of the summer.",
    "The stock market fell sharply after the central bank's announcement.",
    "She practises the violin for two hours every evening.",
    "Could you send me the report before the meeting tomorrow?",
    "The river flooded the lower part of the town last spring.",
    "A good night's sleep helps the brain store new memories.",
    "The referee showed him a red card in the final minute.",
    "Electric cars are becoming cheaper as battery prices fall.",
    "The old castle on the hill attracts thousands of tourists each year.",
    "I usually drink green tea instead of coffee in the morning.",
    "The committee postponed its decision until more data is available.",
    "Whales migrate thousands of miles between feeding and breeding grounds.",
    "The software update fixed the bug that caused the app to crash.",
    "My grandmother taught me how to bake bread without a recipe.",
    "The city plans to build a new park where the factory used to be.",
    "Dolphins are known for their intelligence and playful behaviour.",
    "The concert was cancelled because the singer had a sore throat.",
    "Farmers are worried that the dry weather will ruin the harvest.",
    "He apologised for arriving late and sat down at the back.",
    "The telescope captured images of a galaxy billions of light years away.",
    "Our local bakery sells the best croissants in the neighbourhood.",
    "The government announced new rules for renting apartments.",
    "She wrote her first novel while working as a nurse.",
    "The kids built a snowman in the garden after school.",
    "Traffic was heavy on the motorway because of an accident.",
    "The company hired fifty new engineers to work on its cloud platform.",
    "Tomatoes grow best in warm, sunny places with plenty of water.",
    "The professor explained the theory using a simple drawing.",
    "Many birds fly south for the winter to find food.",
    "The restaurant closed early because the kitchen ran out of gas.",
    "He finally passed his driving test on the third attempt.",
    "The documentary explores the history of jazz in New Orleans.",
    "Drinking enough water is important during hot weather.",
    "The team celebrated their victory with a parade through the city.",
    "Researchers trained the model on millions of labelled images.",
    "The shop offers a discount to students on weekdays.",
    "A thick fog covered the valley until late in the morning.",
    "The workers went on strike to demand higher wages.",
    "My laptop battery only lasts about three hours now.",
    "The hikers reached the summit just before sunset.",
    "Prices for fresh vegetables have doubled since last year.",
    "The teacher asked the students to read the first chapter at home.",
    "An ancient coin was found by a farmer ploughing his field.",
    "The hospital opened a new wing for children with cancer.",
    "They watched a documentary about penguins in Antarctica.",
    "The printer on the second floor is out of paper again.",
    "Wind turbines now supply a third of the country's electricity.",
    "The puppy chewed through the cable of my headphones.",
    "The actor won an award for his role in the historical drama.",
    "Please turn off the lights when you leave the room.",
    "The festival brings together musicians from more than forty countries.",
    "Cyclists are asked to wear helmets on the mountain trails.",
    "The scientist warned that sea levels could rise faster than expected.",
    "We ordered pizza and watched a film on Friday night.",
    "The police are searching for witnesses to the robbery.",
    "Learning to code helped her find a job in data analysis.",
    "The airline lost my suitcase on the way back from Lisbon.",
    "Coral reefs are threatened by warmer and more acidic oceans.",
    "The manager thanked the staff for their hard work this quarter.",
    "A small boat was rescued after drifting for two days at sea.",
    "Reading before bed helps me relax after a long day.",
    "The council voted to ban cars from the historic centre.",
    "He bought a second-hand bicycle to ride to work.",
    "The chef uses only local ingredients from nearby farms.",
    "Astronauts on the space station grow lettuce in small chambers.",
    "The exam results will be published online next week.",
    "Her speech about climate change moved many people in the audience.",
    "The village has only one shop and a tiny post office.",
    "The new vaccine proved effective in a large clinical trial.",
    "Don't forget to water the plants while I'm away.",
    "The company's profits grew despite the difficult economy.",
    "An owl was hooting in the tree outside my window all night.",
    "The museum's collection includes paintings by Monet and Van Gogh.",
    "The road was blocked by fallen trees after the storm.",
    "Teenagers spend several hours a day on their phones.",
    "The bakery's owner wakes up at four to prepare the dough.",
    "The scientists measured the temperature of the lake every hour.",
    "His favourite subject at school was geography.",
    "The peace talks ended without an agreement.",
    "We need to buy milk, eggs and bread on the way home.",
    "The algorithm sorts the list in linear time for small integers.",
    "Smoke from the wildfires could be seen from the coast.",
    "The orchestra is looking for a new conductor.",
    "She runs five kilometres every morning before work.",
    "The ancient city was buried under volcanic ash for centuries.",
    "Our internet provider raised its prices again this year.",
    "The children were excited about their trip to the zoo.",
    "A new study links air pollution to memory problems in old age.",
    "The cat knocked a glass of water off the kitchen table.",
    "Most of the audience left before the end of the play.",
    "The bank will close several branches in rural areas.",
    "He keeps a diary of the birds he sees in his garden.",
    "The satellite will monitor changes in the polar ice caps.",
    "The negotiations between the union and the employers continue today.",
    "I've been learning Spanish with an app for six months.",
    "The bridge connects the island to the mainland.",
    "Fresh snow made the ski slopes perfect for the weekend.",
    "The director is famous for long, silent shots of landscapes.",
    "Customers complained about the long queues at the checkout.",
    "The factory reduced its water use by recycling waste water.",
    "What time does the pharmacy open on Sundays?",
    "The marathon runners crossed the finish line in heavy rain.",
    "The new law protects workers who report fraud.",
    "Honey never spoils if it is stored in a sealed jar.",
    "The firefighters rescued a family from the burning house.",
    "The professor's lecture on black holes was fully booked.",
    "Our flight was overbooked, so we were moved to a later one.",
    "The garden looks beautiful in May when the roses bloom.",
    "Engineers tested the robot on rough terrain in the desert.",
    "The price of gold reached its highest level in a decade.",
    "My brother is training to become a pilot.",
    "The town holds a food market in the square every Saturday.",
    "Heavy rain is expected across the south later this week.",
    "The game's graphics are impressive, but the story is weak.",
    "Volunteers cleaned up plastic waste from the beach.",
    "The lawyer advised her client not to answer the question.",
)


def stdlib_sentences(n=256, seed=0, min_words=5, max_words=30):
    """`n` single sentences split from stdlib_docstrings() paragraphs (closer in
    length to typical inputs of a sentence encoder), same deterministic order."""
    import re
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n: expected a non-negative int, got {n!r}")
    out = []
    for para in stdlib_docstrings(10 ** 9, seed):
        for s in re.split(r"(?<=[.!?])\s+(?=[A-Z])", para):
            if min_words <= len(s.split()) <= max_words:
                out.append(s)
                if len(out) == n:
                    return out
    return out
